"""Read intermediate hidden states out of llama.cpp's forward pass (the "layer taps").

llama.cpp only hands out the final layer's states, but a scheduler callback (`cb_eval`, set when
the context is made) sees every tensor of the graph as it is computed. llama.cpp names each
layer's output `l_out-<layer>`; the tap asks for the chosen ones and copies them out, through
ggml's own accessors (no struct layouts hard-coded here). For a classifier head a middle layer's
states usually carry more about *what kind of request this is* than the last layer, which is
shaped to predict the next token.

The callback runs for every node of every graph (a few hundred per decode); it is armed only
while the request itself is evaluated, so the prefix and the route-scoring passes pay a cheap
Python check per node and nothing else.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable
from pathlib import Path

import numpy as np


def _ggml() -> ctypes.CDLL:
    import llama_cpp

    lib_dir = Path(llama_cpp.__file__).parent / "lib"
    lib = ctypes.CDLL(str(lib_dir / "libggml-base.so"))
    lib.ggml_get_name.restype = ctypes.c_char_p
    lib.ggml_get_name.argtypes = [ctypes.c_void_p]
    lib.ggml_nelements.restype = ctypes.c_int64
    lib.ggml_nelements.argtypes = [ctypes.c_void_p]
    lib.ggml_nbytes.restype = ctypes.c_size_t
    lib.ggml_nbytes.argtypes = [ctypes.c_void_p]
    lib.ggml_is_contiguous.restype = ctypes.c_bool
    lib.ggml_is_contiguous.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_tensor_get.restype = None
    lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t,
                                            ctypes.c_size_t]
    return lib


class LayerTap:
    """Copies the outputs of chosen layers while armed: `states[layer]` is (n_tokens, n_embd).

    Armed with `stop=True`, it ends the forward pass once every chosen layer is copied (early
    exit): returning False from the callback makes ggml's scheduler skip the rest of the graph, so
    the layers above, and the output head, are never computed. The KV cells written by such a pass
    are incomplete above the last chosen layer: the caller must roll them back."""

    def __init__(self, layers: Iterable[int] = (), n_embd: int = 0) -> None:
        import llama_cpp

        self.n_embd = n_embd
        self.names: dict[bytes, int] = {}
        self._want(layers)
        self.armed = False
        self.stop = False
        self.states: dict[int, np.ndarray] = {}
        self._g = _ggml()
        # keep a reference: llama.cpp holds only the C pointer
        self.callback = llama_cpp.ggml_backend_sched_eval_callback(self._on_tensor)

    def _on_tensor(self, t: int, ask: bool, _user: int) -> bool:
        if not self.armed:
            return not ask  # not wanted; "go on" when called after a compute
        try:
            layer = self.names.get(self._g.ggml_get_name(t))
            if layer is None:
                return not ask
            if ask:
                return True
            n = self._g.ggml_nelements(t)
            if n % self.n_embd or not self._g.ggml_is_contiguous(t):
                return True  # not the layout expected: leave it out, the caller sees it missing
            out = np.empty((n // self.n_embd, self.n_embd), dtype=np.float32)
            if self._g.ggml_nbytes(t) != out.nbytes:
                return True
            self._g.ggml_backend_tensor_get(t, out.ctypes.data, 0, out.nbytes)
            self.states[layer] = out
            return not (self.stop and len(self.states) == len(self.names))
        except Exception:  # never raise into C; a missing layer is reported by the caller
            return True

    def _want(self, layers: Iterable[int]) -> None:
        self.names = {f"l_out-{int(i)}".encode(): int(i) for i in layers}

    def arm(self, layers: Iterable[int] | None = None, *, stop: bool = False) -> None:
        """Start copying the given layers' outputs (by default the last ones asked for); with
        `stop`, end the pass after the deepest of them."""
        if layers is not None:
            self._want(layers)
        self.states = {}
        self.armed = bool(self.names)
        self.stop = stop and self.armed

    def disarm(self) -> dict[int, np.ndarray]:
        self.armed = self.stop = False
        got, self.states = self.states, {}
        return got
