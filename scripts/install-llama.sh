#!/usr/bin/env bash
# Install llama-cpp-python into a venv, built with explicit CPU flags.
#
# A default build uses -march=native, which turns on the AMX kernels on recent Xeons, and every
# decode then segfaults in ggml_backend_amx_mul_mat. So we pick the flags ourselves (AVX-512 where
# the CPU has it, else AVX2; AMX always off), build the wheel once per flag set into
# ~/.cache/llmrouter/wheels/<hash-of-flags>/, and install exactly that file. pip's own wheel cache
# is never used: it would hand back a wheel built with whatever flags came first.
#
# Override the flags with LLAMA_CMAKE_ARGS (e.g. CUDA: "-DGGML_CUDA=ON", Metal: "-DGGML_METAL=ON").
set -euo pipefail
PY=${1:?usage: install-llama.sh VENV_PYTHON}
VERSION=${LLAMA_CPP_VERSION:-0.3.36}

common="-DGGML_NATIVE=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF"
avx2="-DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
if [ -n "${LLAMA_CMAKE_ARGS:-}" ]; then
  flags="$LLAMA_CMAKE_ARGS"
elif grep -qw avx512bw /proc/cpuinfo 2>/dev/null && grep -qw avx512vl /proc/cpuinfo; then
  flags="$common $avx2 -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON"
elif grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
  flags="$common $avx2"
else
  flags="$common"   # other CPUs (Arm, Apple): llama.cpp's defaults for them are safe
fi
hash=$(printf '%s|%s|%s' "$VERSION" "$flags" "$("$PY" -c 'import sys;print(sys.version_info[:2])')" | sha256sum | cut -c1-16)
dir="${LLMROUTER_WHEELS:-$HOME/.cache/llmrouter/wheels}/$hash"
wheel=$(ls "$dir"/llama_cpp_python-"$VERSION"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  echo ">> building llama-cpp-python $VERSION (3-5 minutes on 2 cores) with: $flags" >&2
  mkdir -p "$dir"
  CMAKE_ARGS="$flags" "$PY" -m pip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python \
    -w "$dir" "llama-cpp-python==$VERSION"
  wheel=$(ls "$dir"/llama_cpp_python-"$VERSION"-*.whl | head -n1)
  echo "$flags" > "$dir/FLAGS"
fi
"$PY" -m pip install --no-deps --force-reinstall --no-cache-dir -q "$wheel"
echo ">> llama-cpp-python $VERSION from $wheel" >&2
