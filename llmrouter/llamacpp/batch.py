"""Several requests in one llama.cpp decode over the shared warm prefix.

Each request is its own sequence (ids 1..N; seq 0 holds the prefix). In a unified KV cache
(`kv_unified`), `llama_memory_seq_cp(0 -> s)` only adds the id to the prefix's cells: nothing is
copied and nothing is evaluated twice. All the requests' tokens go into one batch at positions
after the prefix; rows come back in batch order, so each request's hidden states, layer taps and
logits are sliced out of the one pass. Route names that share first tokens are scored in the same
pass: a request's tokens also carry one more sequence id per branch point of the route trie, and
the branch's tokens follow on that id only.

A group must fit one ubatch (the taps see one ubatch at a time) and the free KV cells, and its
sequence ids must stay below the context's n_seq_max; `pack` cuts groups accordingly. Afterwards
every request sequence is removed and seq 0 holds the prefix alone, so the single-request path is
unaffected. A request's numbers differ from its single pass only by float noise (attention adds
up over KV cells in an order that depends on where they sit).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llmrouter.errors import DeciderError
from llmrouter.llamacpp.taps import LayerTap
from llmrouter.llamacpp.trie import TrieNode

Path_ = tuple[int, ...]


def branch_paths(root: TrieNode) -> list[Path_]:
    """Paths below the root where route scoring needs another logits row (several children)."""
    out: list[Path_] = []

    def walk(node: TrieNode, path: Path_) -> None:
        if path and len(node.children) > 1:
            out.append(path)
        for tok, child in node.children.items():
            walk(child, path + (tok,))

    walk(root, ())
    return out


def pack(sizes: Sequence[int], max_tokens: int, max_requests: int) -> list[list[int]]:
    """Indices of requests grouped in arrival order: each group within `max_tokens` tokens and
    `max_requests` requests. A request too big for any group raises DeciderError."""
    groups: list[list[int]] = []
    cur: list[int] = []
    used = 0
    for i, n in enumerate(sizes):
        if n > max_tokens:
            raise DeciderError("request and suffix do not fit one batch; raise [router] batch_size")
        if cur and (used + n > max_tokens or len(cur) >= max_requests):
            groups.append(cur)
            cur, used = [], 0
        cur.append(i)
        used += n
    if cur:
        groups.append(cur)
    return groups


@dataclass
class Rows:
    """One request's share of a batched pass."""

    states: np.ndarray | None  # final hidden states of its tokens (with embeddings on)
    layers: dict[int, np.ndarray]  # layer -> its tokens' rows there
    logits: dict[Path_, np.ndarray] = field(default_factory=dict)  # branch path -> next-token logits


@dataclass
class MultiPass:
    """A llama_cpp.Llama whose context holds several sequences, and its warm prefix in seq 0."""

    llm: Any
    tap: LayerTap
    prefix_len: int
    n_embd: int
    n_vocab: int

    @property
    def limits(self) -> tuple[int, int]:
        """(tokens, sequences) one pass may hold."""
        import llama_cpp

        ctx = self.llm._ctx.ctx
        tokens = min(int(llama_cpp.llama_n_ubatch(ctx)), int(llama_cpp.llama_n_batch(ctx)),
                     int(llama_cpp.llama_n_ctx(ctx)) - self.prefix_len)
        return tokens, int(llama_cpp.llama_n_seq_max(ctx))

    def run(self, requests: Sequence[list[int]], paths: Sequence[Path_], *, states: bool,
            layers: tuple[int, ...], stop: bool = False) -> list[Rows]:
        """Evaluate each token list after the prefix, all in one decode. `states`: every token is
        an output and final hidden states are read; `stop`: the pass ends after the deepest of
        `layers` (no logits; see taps.py)."""
        import llama_cpp as lib

        ctx, llm, p = self.llm._ctx.ctx, self.llm, self.prefix_len
        mem = lib.llama_get_memory(ctx)
        paths = [] if stop else list(paths)
        per = 1 + len(paths)
        seqs = [[1 + k * per + j for j in range(per)] for k in range(len(requests))]
        batch, starts, path_rows = self._fill(requests, paths, seqs, every=states)
        used = [s for ss in seqs for s in ss]
        try:
            lib.llama_memory_seq_rm(mem, 0, p, -1)  # a single pass leaves its request on seq 0
            for s in used:
                lib.llama_memory_seq_rm(mem, s, -1, -1)
                lib.llama_memory_seq_cp(mem, 0, s, 0, p)
            if states:
                lib.llama_set_embeddings(ctx, True)
            self.tap.arm(layers, stop=stop)
            try:
                rc = lib.llama_decode(ctx, batch)
            finally:
                taken = self.tap.disarm()
            if rc != 0:
                raise DeciderError(f"llama_decode returned {rc} for a batch of {len(requests)}")
            n = int(batch.n_tokens)
            missing = [x for x in layers if x not in taken or len(taken[x]) != n]
            if missing:
                raise DeciderError(f"llama.cpp gave no states for layer(s) {missing}")
            return self._split(requests, paths, starts, path_rows, taken, states, stop)
        finally:
            if states:
                lib.llama_set_embeddings(ctx, False)
            for s in used:
                lib.llama_memory_seq_rm(mem, s, -1, -1)
            llm.n_tokens = p  # seq 0: the prefix alone

    def _fill(self, requests: Sequence[list[int]], paths: list[Path_], seqs: list[list[int]], every: bool
              ) -> tuple[Any, list[int], list[dict[Path_, int]]]:
        b = self.llm._batch.batch
        n, starts, path_rows = 0, [], []

        def add(tok: int, pos: int, ids: Sequence[int], out: bool) -> int:
            nonlocal n
            b.token[n], b.pos[n], b.n_seq_id[n], b.logits[n] = tok, pos, len(ids), out
            for j, s in enumerate(ids):
                b.seq_id[n][j] = s
            n += 1
            return n - 1

        for toks, ids in zip(requests, seqs):
            starts.append(n)
            for j, tok in enumerate(toks):
                add(tok, self.prefix_len + j, ids, every or j == len(toks) - 1)
            rows: dict[Path_, int] = {}
            for path, s in zip(paths, ids[1:]):
                for j, tok in enumerate(path):
                    r = add(tok, self.prefix_len + len(toks) + j, (s,), every or j == len(path) - 1)
                rows[path] = r
            path_rows.append(rows)
        b.n_tokens = n
        return b, starts, path_rows

    def _split(self, requests: Sequence[list[int]], paths: list[Path_], starts: list[int],
               path_rows: list[dict[Path_, int]], taken: dict[int, np.ndarray], states: bool, stop: bool
               ) -> list[Rows]:
        import llama_cpp as lib

        ctx = self.llm._ctx.ctx
        final = None
        if states:
            ptr = lib.llama_get_embeddings(ctx)
            if not ptr:
                raise DeciderError("llama.cpp returned no hidden states")
            final = np.ctypeslib.as_array(ptr, shape=(int(self.llm._batch.batch.n_tokens), self.n_embd)).copy()
        out = []
        for toks, start, prow in zip(requests, starts, path_rows):
            span = slice(start, start + len(toks))
            rows = Rows(final[span] if final is not None else None, {x: t[span] for x, t in taken.items()})
            if not stop:
                for path, r in {(): start + len(toks) - 1, **prow}.items():
                    ptr = lib.llama_get_logits_ith(ctx, r)
                    if not ptr:
                        raise DeciderError("llama.cpp returned no logits")
                    rows.logits[path] = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).copy()
            out.append(rows)
        return out
