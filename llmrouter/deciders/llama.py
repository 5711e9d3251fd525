"""The in-process decider: llama.cpp reads the request on a warm prompt prefix and scores the routes.

Per request only the request's own tokens and a short suffix are evaluated: the constant prefix
(instructions, routes, examples) stays in the KV cache, and is saved to disk so a cold start loads
it instead of evaluating it again. Routes are scored from the logits (llamacpp/trie.py), which gives
the decision and its confidence in one forward pass for most tables. `mode="generate"` and
`explain=True` use Outlines for constrained generation on the same warm prefix.

With a fitted head (`mode="fitted"` or `"combined"`, see head/) the same forward pass also
yields the model's final hidden states, and through a scheduler callback those of the
intermediate layers the head reads (llamacpp/taps.py): no second pass.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmrouter import models
from llmrouter.config import Config, RouterSettings, RouteTable
from llmrouter.errors import ConfigError, DeciderError
from llmrouter.head import CheapStage, FittedHead, Observation
from llmrouter.head.claims import ContentView, content_view
from llmrouter.llamacpp.batch import MultiPass, Rows, branch_paths, pack
from llmrouter.llamacpp.load import load_llama
from llmrouter.llamacpp.taps import LayerTap
from llmrouter.llamacpp.trie import build_trie, passes_needed, score_routes
from llmrouter.paths import user_dir
from llmrouter.prompts import TRUNCATION_MARKER, RouterPrompt, precap_text, truncate_tokens
from llmrouter.types import Timings, Verdict

REASON_TOKENS = 48
MAX_SEQUENCES = 256  # llama.cpp's limit on sequences in one context
TAP_DEPTHS = (0.53, 0.8)  # intermediate layers observed for tuning, as fractions of the model's depth


def build(config: Config, prompt: RouterPrompt) -> LlamaDecider:
    """The in-process decider for a route table: its model pulled and checked, its head attached."""
    settings = config.router
    spec = models.spec_for(settings.model)
    path = models.resolve(settings.model)
    decider = LlamaDecider(path, models.model_digest(path, spec), settings, config.table, prompt,
                           family=models.chat_family(path, spec), kv_dir=user_dir("kv"))
    head_path = settings.head_path(config.path)
    if head_path is not None:
        decider.use_head(FittedHead.load(head_path))
    elif settings.mode in ("fitted", "combined"):
        raise ConfigError(
            f"[router] mode = {settings.mode!r} needs a fitted head: set [router] head",
            hint="run `llmrouter tune DATA.jsonl --config TABLE --out TUNED.toml`, or use mode = \"scored\"",
        )
    return decider


class LlamaDecider:
    """Scores a route table's routes with a local GGUF model. Not thread-safe: one per thread."""

    name = "llama"

    def __init__(
        self,
        model_path: Path,
        model_id: str,
        settings: RouterSettings,
        table: RouteTable,
        prompt: RouterPrompt,
        family: str = "chatml",
        kv_dir: Path | None = None,
    ) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self.settings, self.table, self.prompt, self.model_id = settings, table, prompt, model_id
        self.mode = settings.mode
        self.tap = LayerTap((), 0)  # armed only while a request is evaluated for a head
        # the prefix's sequence and one per request of a batch (a table whose route names share
        # first tokens needs more per request: its batches get fewer requests)
        self.n_seq_max = min(MAX_SEQUENCES, 1 + settings.batch_limit) if settings.batch_limit > 1 else 1
        self.llm = load_llama(model_path, n_ctx=settings.context_size, n_threads=settings.threads,
                              n_threads_batch=settings.threads_batch, n_batch=settings.batch_size,
                              gpu_layers=settings.gpu_layers, eval_callback=self.tap.callback,
                              n_seq_max=self.n_seq_max)
        self._ctx = self.llm._ctx.ctx
        self.n_vocab = self.llm.n_vocab()
        self.tap.n_embd = self.llm.n_embd()
        self.n_layer = int(llama_cpp.llama_model_n_layer(self.llm.model))
        self.observe_layers = tuple(sorted({min(self.n_layer - 1, round(f * self.n_layer)) for f in TAP_DEPTHS}))
        self.lock = threading.Lock()

        rendered = prompt.render(table, examples_per_route=settings.examples_per_route, family=family)
        self.prefix = self._tok(rendered.prefix, bos=True, special=True)
        self.suffix = self._tok(rendered.suffix, special=True)
        end = self._tok(rendered.end_of_answer, special=True)
        self.marker = self._tok(TRUNCATION_MARKER)
        self.route_tokens = {n: self._route_tokens(n) for n in table.names}
        try:
            self.trie = build_trie({n: t + end[:1] for n, t in self.route_tokens.items()})
        except ValueError as exc:
            raise ConfigError(f"route names do not tokenize apart: {exc}") from None
        self.extra_passes = passes_needed(self.trie)
        self.branches = branch_paths(self.trie)
        need = len(self.prefix) + settings.max_request_tokens + len(self.suffix) + 64 + REASON_TOKENS
        if need > settings.context_size:
            raise ConfigError(
                f"the router prompt needs {need} tokens of context but context_size is "
                f"{settings.context_size}",
                hint="raise [router] context_size, or lower examples_per_route / max_request_tokens",
            )
        self.prefix_source = self._warm_prefix(kv_dir)
        self._outlines: object | None = None
        self.n_embd = self.llm.n_embd()
        self.feature_key = hashlib.sha256(
            repr((model_id, self.prefix, self.suffix, settings.max_request_tokens)).encode()
        ).hexdigest()[:16]
        # decisions read the content view; `observe` (tune's rows) reads requests whole, so a head
        # learns from requests as written, claims included, and what the view misses is no signal
        self.view: ContentView | None = content_view() if settings.content_view else None
        self.head: FittedHead | None = None  # attached with use_head()
        self.multi = (MultiPass(self.llm, self.tap, len(self.prefix), self.n_embd, self.n_vocab)
                      if self.n_seq_max > 1 else None)

    @property
    def cache_salt(self) -> str:
        """What besides the model, prompt and table changes this decider's answers: its head, and
        the detector of its content view."""
        head = self.head.digest if self.head is not None else ""
        return head + (f"+view:{self.view.detector.digest}" if self.view is not None else "")

    @property
    def cheap_stage(self) -> CheapStage | None:
        """The cascade's first stage tuned with the head, when the head decides (fitted, combined)."""
        cheap = self.head.cheap if self.head is not None and self.head.needs_states(self.mode) else None
        return cheap.reading(self.read) if cheap is not None and self.view is not None else cheap

    def use_head(self, head: FittedHead) -> None:
        """Decide with a fitted head (checked against this model, prompt and table)."""
        head.check(self.model_id, self.feature_key, self.table.names)
        bad = [x for x in head.layers if not 0 <= x < self.n_layer]
        if bad:
            raise ConfigError(f"the fitted head reads layer(s) {bad}; the model has {self.n_layer}",
                              hint="re-fit it with `llmrouter tune`")
        self.head = head

    # --- tokens --------------------------------------------------------------------------
    def _tok(self, text: str, *, bos: bool = False, special: bool = False) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=bos, special=special)

    def _route_tokens(self, name: str) -> list[int]:
        """A route name's tokens as they follow the suffix (tokenised in context)."""
        both = self._tok(self._detok(self.suffix) + name, special=True)
        if both[: len(self.suffix)] == self.suffix and len(both) > len(self.suffix):
            return both[len(self.suffix):]
        return self._tok(name)

    def _detok(self, toks: list[int]) -> str:
        return self.llm.detokenize(toks, special=True).decode("utf-8", errors="replace")

    # --- the warm prefix -----------------------------------------------------------------
    def _prefix_key(self) -> str:
        import llama_cpp

        blob = repr((self.model_id, self.prefix, llama_cpp.__version__, self.settings.context_size,
                     self.settings.gpu_layers, self.settings.batch_size, self.n_seq_max))
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def _warm_prefix(self, kv_dir: Path | None) -> str:
        """Put the prefix in the KV cache: from disk if saved before, else evaluate and save it."""
        path = (kv_dir / f"{self._prefix_key()}.kv") if kv_dir else None
        if path and path.is_file() and self._load_prefix(path):
            return "disk"
        cpus = os.cpu_count() or 1
        self._set_threads(self.settings.threads, max(cpus, self.settings.threads_batch or 1))
        try:
            self.llm.reset()
            self.llm.eval(self.prefix)
        finally:
            self._set_threads(self.settings.threads, self.settings.threads_batch or self.settings.threads)
        if path:
            self._save_prefix(path)
        return "computed"

    def _set_threads(self, n: int, n_batch: int) -> None:
        self._lib.llama_set_n_threads(self._ctx, n, n_batch)

    def _save_prefix(self, path: Path) -> None:
        lib = self._lib
        size = lib.llama_state_seq_get_size(self._ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        if lib.llama_state_seq_get_data(self._ctx, buf, size, 0) != size:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(bytes(buf))
            os.replace(tmp, path)
        except OSError:
            pass  # a cache we cannot write only costs the next cold start some time

    def _load_prefix(self, path: Path) -> bool:
        lib = self._lib
        try:
            data = path.read_bytes()
        except OSError:
            return False
        self.llm.reset()
        self.llm._ctx.kv_cache_clear()
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if lib.llama_state_seq_set_data(self._ctx, buf, len(data), 0) != len(data):
            self.llm._ctx.kv_cache_clear()
            path.unlink(missing_ok=True)
            return False
        n = len(self.prefix)
        self.llm.input_ids[:n] = self.prefix
        self.llm.n_tokens = n
        return True

    # --- deciding ------------------------------------------------------------------------
    def encode_request(self, text: str) -> tuple[list[int], bool]:
        """The request's tokens within the budget, and whether it was truncated."""
        budget = self.settings.max_request_tokens
        text, cut = precap_text(text, budget * 16)
        toks = self._tok(text)
        toks, cut2 = truncate_tokens(toks, budget, self.marker)
        return toks, cut or cut2

    def _logits(self) -> np.ndarray:
        ptr = self._lib.llama_get_logits_ith(self._ctx, -1)
        if not ptr:
            raise DeciderError("llama.cpp returned no logits")
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def _logits_after(self, path: Sequence[int]) -> np.ndarray:
        if path:
            base = self.llm.n_tokens
            self.llm.eval(list(path))
            row = self._logits().copy()
            self.llm.n_tokens = base  # roll back: the next eval drops the extra KV cells
            return row
        return self._logits()

    def _eval_request(self, toks: list[int], states: bool, layers: tuple[int, ...] = ()
                      ) -> tuple[np.ndarray | None, dict[int, np.ndarray]]:
        """Evaluate `toks` after the prefix; with `states`, return their final hidden states, and
        each of `layers`' outputs (rows: the tokens)."""
        if not states:
            self.llm.eval(toks)
            return None, {}
        lib, llm = self._lib, self.llm
        lib.llama_set_embeddings(self._ctx, True)
        try:
            # every token marked as an output: llama.cpp needs them all for embeddings
            taken = self._decode_tapped(toks, layers, all_outputs=True)
            llm.input_ids[llm.n_tokens: llm.n_tokens + len(toks)] = toks
            llm.n_tokens += len(toks)
            ptr = lib.llama_get_embeddings(self._ctx)
            if not ptr:
                raise DeciderError("llama.cpp returned no hidden states")
            return np.ctypeslib.as_array(ptr, shape=(len(toks), self.n_embd)).copy(), taken
        finally:
            lib.llama_set_embeddings(self._ctx, False)

    def observe(self, text: str) -> tuple[Observation, Verdict]:
        """The model's route scores and hidden states for `text` as written (one forward pass; no
        content view), and the verdict this decider gives on them. For tune: features for every
        mode at once."""
        with self.lock:
            try:
                verdict, obs = self._decide(text, False, observe=True)
            except DeciderError:
                raise
            except Exception as exc:
                raise DeciderError(f"{type(exc).__name__}: {exc}") from exc
        assert obs is not None
        return obs, verdict

    def decide(self, text: str, *, explain: bool = False) -> Verdict:
        with self.lock:
            try:
                return self._decide(self.read(text), explain)[0]
            except DeciderError:
                raise
            except Exception as exc:  # llama.cpp or Outlines failed: the router falls back
                raise DeciderError(f"{type(exc).__name__}: {exc}") from exc

    def read(self, text: str) -> str:
        """What the model reads of a request: its content view where the table asks for one (of
        a huge request, of its head and tail: encode_request keeps no more)."""
        if self.view is None:
            return text
        return self.view(precap_text(text, self.settings.max_request_tokens * 32)[0])

    def _decide(self, text: str, explain: bool, observe: bool = False) -> tuple[Verdict, Observation | None]:
        t0 = time.perf_counter()
        req, truncated = self.encode_request(text)
        t1 = time.perf_counter()
        self.llm.n_tokens = len(self.prefix)
        head = self.head if self.mode != "generate" else None
        if head is not None and self._exit_layer() is not None and not (observe or explain):
            return self._decide_early(text, req, truncated, head, t0, t1), None
        need = observe or (head is not None and head.needs_states(self.mode))
        layers = tuple(sorted(set(head.layers if need and head is not None else ())
                              | set(self.observe_layers if observe else ())))
        states, at = self._eval_request(req + self.suffix, states=need, layers=layers)
        t2 = time.perf_counter()
        scores = score_routes(self.trie, self._logits_after)
        obs = self._observation(text, len(req), scores, states, at)
        decider = f"llama-{self.mode}"
        if head is not None:
            scores, decider = head.decide(obs, self.mode)
        route = max(scores, key=scores.__getitem__)
        reason = None
        if self.mode == "generate":
            route = self._generate_route(req)
        if explain:
            reason = self._explain(req, route)
        return Verdict(route=route, scores=scores, reason=reason, truncated=truncated, request_tokens=len(req),
                       timings=_timings(t0, t1, t2, time.perf_counter()), decider=decider), obs

    def _observation(self, text: str, n: int, scores: dict[str, float], states: np.ndarray | None,
                     layers: dict[int, np.ndarray]) -> Observation:
        """What a head reads of one request: route scores, and with states or layer rows (the
        request's `n` tokens, then the suffix) their mean and last row, and the text."""
        if states is None and not layers:
            return Observation(scores=scores)
        return Observation(scores=scores, mean=None if states is None else _mean(states, n),
                           last=None if states is None else states[-1],
                           layers={x: (_mean(s, n), s[-1]) for x, s in layers.items()},
                           text=precap_text(text, self.settings.max_request_tokens * 16)[0])

    def _exit_layer(self) -> int | None:
        """Where the forward pass may stop: the head's deepest layer, when it reads nothing above
        it and that layer is not the model's last (whose rows llama.cpp computes for outputs only)."""
        at = self.head.exit_layer if self.head is not None and self.mode == "fitted" else None
        return at if at is not None and at < self.n_layer - 1 else None

    # --- batches: requests that waited together, one pass ---------------------------------
    def decide_batch(self, texts: Sequence[str]) -> list[Verdict]:
        """Verdicts for requests that waited together: one llama.cpp pass per group that fits
        (llamacpp/batch.py); a group of one takes the single-request path."""
        with self.lock:
            try:
                return self._decide_many([self.read(t) for t in texts])
            except DeciderError:
                raise
            except Exception as exc:
                raise DeciderError(f"{type(exc).__name__}: {exc}") from exc

    def _decide_many(self, texts: list[str]) -> list[Verdict]:
        if self.multi is None or self.mode == "generate":
            return [self._decide(t, False)[0] for t in texts]
        t0 = time.perf_counter()
        encoded = [self.encode_request(t) for t in texts]
        exit_at = self._exit_layer()
        head = self.head
        states = exit_at is None and head is not None and head.needs_states(self.mode)
        layers = head.layers if head is not None and (states or exit_at is not None) else ()
        paths = [] if exit_at is not None else self.branches
        max_tokens, n_seq = self.multi.limits
        sizes = [len(req) + len(self.suffix) + sum(len(p) for p in paths) for req, _ in encoded]
        groups = pack(sizes, max_tokens, min(self.settings.batch_limit, (n_seq - 1) // (1 + len(paths))))
        out: list[Verdict | None] = [None] * len(texts)
        for group in groups:
            if len(group) == 1:
                out[group[0]] = self._decide(texts[group[0]], False)[0]
                continue
            t1 = time.perf_counter()
            rows = self.multi.run([encoded[i][0] + self.suffix for i in group], paths, states=states,
                                  layers=layers, stop=exit_at is not None)
            t2 = time.perf_counter()
            for i, r in zip(group, rows):
                out[i] = self._verdict_of(texts[i], encoded[i], r, (t0, t1, t2))
            t0 = time.perf_counter()
        return [v for v in out if v is not None]

    def _verdict_of(self, text: str, encoded: tuple[list[int], bool], rows: Rows,
                    times: tuple[float, float, float]) -> Verdict:
        """One request's verdict from its rows of a batched pass."""
        req, truncated = encoded
        head = self.head
        scores = score_routes(self.trie, lambda path: rows.logits[tuple(path)]) if rows.logits else {}
        obs = self._observation(text, len(req), scores, rows.states, rows.layers)
        decider = f"llama-{self.mode}"
        if head is not None:
            scores, decider = head.decide(obs, self.mode)
            if not rows.logits:  # the pass stopped early: no logits, no route scores
                decider = f"fitted:exit@{head.exit_layer}"
        return Verdict(route=max(scores, key=scores.__getitem__), scores=scores, truncated=truncated,
                       request_tokens=len(req), timings=_timings(*times, time.perf_counter()), decider=decider)

    # --- early exit: a head that reads only intermediate layers ---------------------------
    def _decide_early(self, text: str, req: list[int], truncated: bool, head: FittedHead, t0: float, t1: float
                      ) -> Verdict:
        """Evaluate the request only up to the deepest layer the head reads (llamacpp/taps.py
        stops the pass there): no layers above it, no output head, no route scoring."""
        at = self._eval_to_layer(req + self.suffix, head.layers)
        return self._verdict_of(text, (req, truncated), Rows(None, at), (t0, t1, time.perf_counter()))

    def _eval_to_layer(self, toks: list[int], layers: tuple[int, ...]) -> dict[int, np.ndarray]:
        """The chosen layers' outputs for `toks` after the prefix, the pass stopped after the
        deepest. Only the last token is an output, so every layer below the model's last holds
        all rows. The request's KV cells stay incomplete: n_tokens is not advanced, so the next
        pass drops them."""
        return self._decode_tapped(toks, layers, all_outputs=False, stop=True)

    def _decode_tapped(self, toks: list[int], layers: tuple[int, ...], *, all_outputs: bool, stop: bool = False
                       ) -> dict[int, np.ndarray]:
        """Decode `toks` after llm.n_tokens in one batch with the taps armed on `layers`; their
        rows (all of them, or DeciderError)."""
        if len(toks) > self.settings.batch_size:
            raise DeciderError("request and suffix do not fit one batch; raise [router] batch_size")
        llm = self.llm
        llm._ctx.kv_cache_seq_rm(-1, llm.n_tokens, -1)
        llm._batch.set_batch(batch=toks, n_past=llm.n_tokens, logits_all=all_outputs)
        self.tap.arm(layers, stop=stop)
        try:
            llm._ctx.decode(llm._batch)
        finally:
            taken = self.tap.disarm()
        missing = [x for x in layers if x not in taken or len(taken[x]) != len(toks)]
        if missing:
            raise DeciderError(f"llama.cpp gave no states for layer(s) {missing}")
        return taken

    # --- Outlines: generated JSON and explanations ---------------------------------------
    @property
    def outlines(self) -> Any:
        if self._outlines is None:
            from llmrouter.llamacpp.constrained import ConstrainedGenerator

            self._outlines = ConstrainedGenerator(self.llm, self.model_id, self.table)
        return self._outlines

    def _generate_route(self, req: list[int]) -> str:
        """Outlines-constrained JSON generation of the route (after the same prompt)."""
        return self.outlines.generate_route(self.prefix + req + self.suffix)

    def _explain(self, req: list[int], route: str) -> str:
        """A short reason, generated under an Outlines regex after the decided route.

        The prompt is rebuilt from its parts, not read back from the context: in generate mode
        the context also holds the generated JSON."""
        return self.outlines.reason(self.prefix + req + self.suffix + self.route_tokens[route])


def _timings(t0: float, t1: float, t2: float, t3: float) -> Timings:
    """Tokenize (t0-t1), prefill (t1-t2), decode (t2-t3) and total, in ms."""
    ms = lambda a, b: round((b - a) * 1000, 3)  # noqa: E731
    return Timings(tokenize_ms=ms(t0, t1), prefill_ms=ms(t1, t2), decode_ms=ms(t2, t3), total_ms=ms(t0, t3))


def _mean(states: np.ndarray, n: int) -> np.ndarray:
    """The average of the first `n` rows (the request's tokens); zeros for an empty request."""
    return states[:n].mean(axis=0) if n else np.zeros(states.shape[1], dtype=np.float32)
