"""One way to load a GGUF with llama-cpp-python: quiet, with explicit threads, and optionally with a
scheduler callback installed in its context (llama_cpp.Llama has no argument for one)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from llmrouter.errors import ModelError

# OpenMP threads that spin-wait make llama.cpp 10-30x slower when another process is busy; a
# passive wait keeps latency predictable. Must be set before the OpenMP runtime loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_PARAMS_LOCK = threading.Lock()


def load_llama(model_path: Path, *, n_ctx: int, n_threads: int = 1, n_threads_batch: int | None = None,
               n_batch: int = 512, gpu_layers: int = 0, eval_callback: object = None, n_seq_max: int = 1,
               **extra: Any) -> Any:
    """A llama_cpp.Llama for `model_path`; ModelError (with what to do) when it cannot be loaded.

    `eval_callback` (a ggml_backend_sched_eval_callback) and `n_seq_max` (sequences decoded side by
    side, in one unified KV cache: see batch.py) go into the context, which only takes them when it
    is made, so llama_cpp's default context params are wrapped while it is built."""
    try:
        import llama_cpp
        import llama_cpp.llama_cpp as lib
    except ImportError as exc:  # pragma: no cover - install problem
        raise ModelError(f"llama-cpp-python is not importable: {exc}", hint="run `make install`") from None
    with _PARAMS_LOCK:
        original = lib.llama_context_default_params
        if eval_callback is not None or n_seq_max > 1:
            def with_ours() -> Any:
                params = original()
                if eval_callback is not None:
                    params.cb_eval = eval_callback
                    params.cb_eval_user_data = None
                if n_seq_max > 1:
                    params.n_seq_max = n_seq_max
                    params.kv_unified = True  # every sequence sees the one prefix's cells
                return params

            lib.llama_context_default_params = with_ours
        try:
            return llama_cpp.Llama(model_path=str(model_path), n_ctx=n_ctx, n_batch=n_batch, n_threads=n_threads,
                                   n_threads_batch=n_threads_batch or n_threads, n_gpu_layers=gpu_layers,
                                   logits_all=False, seed=0, verbose=False, **extra)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load model {model_path}: {exc}") from None
        finally:
            lib.llama_context_default_params = original
