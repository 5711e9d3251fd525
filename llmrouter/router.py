"""Router: a request in, a validated Decision out (and, with providers, a completion).

    request -> decision cache -> decider -> validate against the table -> Decision

Deciding is synchronous (llama.cpp blocks). Decider failures never reach the caller: they become
the default route with `source="default"` and the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from llmrouter import log as logmod
from llmrouter import registry
from llmrouter.cache import DecisionCache, cache_key
from llmrouter.config import Config, user_dir
from llmrouter.deciders.base import Decider, Verdict
from llmrouter.errors import DeciderError
from llmrouter.policy.base import Policy, restrict
from llmrouter.policy.engine import build_policy, decision_log_fields
from llmrouter.prompts import RouterPrompt
from llmrouter.types import Decision, Request, Timings
from llmrouter.validate import clean_scores, extract_route

log = logmod.get_logger("llmrouter")


class Router:
    """Decides routes for requests with the configured local model and route table."""

    def __init__(
        self,
        config: Config,
        *,
        decider: Decider | None = None,
        cache: DecisionCache | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.config = config
        self.policy = policy if policy is not None else build_policy(config)
        self.table = config.table
        settings = config.router
        self.prompt = RouterPrompt.load(settings.prompt)
        spec = registry.spec_for(settings.model)
        self.model_name = spec.name if spec else Path(settings.model).name
        if decider is None and settings.remote is not None:
            from llmrouter.deciders.remote import RemoteDecider

            decider = RemoteDecider(settings.remote, settings, self.table, self.prompt)
        if decider is None:
            from llmrouter.deciders.llama import LlamaDecider

            model_path = registry.resolve(settings.model)
            self.model_sha256 = model_digest(model_path, spec)
            decider = LlamaDecider(
                model_path,
                self.model_sha256,
                settings,
                self.table,
                self.prompt,
                family=spec.chat_template if spec else guess_family(model_path),
                kv_dir=user_dir("kv"),
            )
            attach_head(decider, config)
        else:
            self.model_sha256 = getattr(decider, "model_id", "") or "custom"
        self.decider = decider
        if cache is None and settings.cache:
            cache = DecisionCache(settings.cache_path, size_mb=settings.cache_size_mb)
        self.cache = cache

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, **router_overrides: Any) -> Router:
        """A Router for a route table file (None: the packaged default), with settings overridden."""
        config = Config.load(path)
        if router_overrides:
            config = config.with_router(**router_overrides)
        return cls(config)

    # --- deciding ------------------------------------------------------------------------
    def _key(self, text: str, explain: bool) -> str:
        return cache_key(
            text,
            table_fingerprint=self.table.fingerprint,
            prompt_version=self.prompt.version,
            model_sha256=self.model_sha256,
            settings={**self.config.router.decider_settings(), "explain": explain,
                      "head_digest": getattr(getattr(self.decider, "head", None), "digest", "")},
        )

    def decide(self, request: Any, *, explain: bool = False, use_cache: bool = True) -> Decision:
        """The route for `request` (text, chat messages or a Request). Raises only RequestError."""
        t0 = time.perf_counter()
        req = Request.of(request)
        pre = self.policy.before(req) if self.policy else None
        if pre is not None and pre.decision is not None:
            decision = pre.decision  # a rule decided: the model is not asked
        else:
            text = req.text
            key = self._key(text, explain) if (self.cache and use_cache) else ""
            decision = self._from_cache(key, t0) if key else None
            if decision is None:
                decision = self._from_decider(text, explain, t0)
                if key and decision.source == "model":
                    self.cache.set(key, _cacheable(decision))  # type: ignore[union-attr]
            if pre is not None and pre.allowed is not None:
                decision = restrict(decision, pre.allowed, self.table.default_route)
        if self.policy:
            decision = self.policy.after(req, decision)
        self._log(decision, decision_log_fields(req, self.config))
        return decision

    def _from_cache(self, key: str, t0: float) -> Decision | None:
        hit = self.cache.get(key) if self.cache else None  # type: ignore[union-attr]
        if hit is None:
            return None
        route, _why = extract_route(hit, self.table)
        if route is None:  # stale: the table changed under the same key, or the entry is damaged
            return None
        try:
            return Decision(
                **{k: v for k, v in hit.items() if k in _CACHED_FIELDS and k != "route"},
                route=route,
                source="cache",
                prompt_version=self.prompt.version,
                model=self.model_name,
                timings=Timings(total_ms=_ms(t0)),
            )
        except (TypeError, ValueError):
            return None

    def _from_decider(self, text: str, explain: bool, t0: float) -> Decision:
        try:
            verdict: Verdict = self.decider.decide(text, explain=explain)
        except DeciderError as exc:
            return self.default_decision(f"decider failed: {exc}", t0)
        route, why = extract_route(verdict, self.table)
        if route is None:
            return self.default_decision(why, t0)
        if not isinstance(verdict, Verdict):  # a bare route, JSON text or dict from a custom decider
            raw = verdict if isinstance(verdict, dict) else {}
            verdict = Verdict(route=route, scores=raw.get("scores") or {},
                              reason=raw.get("reason") if isinstance(raw.get("reason"), str) else None,
                              decider=getattr(self.decider, "name", ""))
        scores = clean_scores(verdict.scores, self.table)
        return Decision(
            route=route,
            source="model",
            confidence=scores.get(route),
            scores=scores,
            reason=verdict.reason,
            truncated=verdict.truncated,
            request_tokens=verdict.request_tokens,
            prompt_version=self.prompt.version,
            model=self.model_name,
            decider=verdict.decider,
            timings=verdict.timings.model_copy(update={"total_ms": _ms(t0)}),
        )

    def default_decision(self, reason: str, t0: float | None = None) -> Decision:
        """The table's default route, saying why the model's answer was not used."""
        return Decision(
            route=self.table.default_route,
            source="default",
            reason=reason,
            prompt_version=self.prompt.version,
            model=self.model_name,
            timings=Timings(total_ms=_ms(t0) if t0 else 0.0),
        )

    def _log(self, d: Decision, extra: dict[str, Any] | None = None) -> None:
        log.info(
            "decision",
            route=d.route,
            confidence=None if d.confidence is None else round(d.confidence, 4),
            source=d.source,
            decider=d.decider,
            prompt_version=d.prompt_version,
            model=d.model,
            table=self.table.fingerprint,
            request_tokens=d.request_tokens,
            truncated=d.truncated,
            reason=d.reason if d.source == "default" else None,
            rule=d.rule,
            escalated_from=d.escalated_from,
            policy=list(d.policy) or None,
            **(extra or {}),
            **{k: round(v, 3) for k, v in d.timings.model_dump().items()},
        )

    def close(self) -> None:
        if self.cache:
            self.cache.close()

    # --- calling providers (completion.py) ---
    def complete(self, request: Any, **kw: Any) -> Any:
        """Route `request` and return the answer (a Completion), blocking."""
        from llmrouter.completion import complete

        return complete(self, request, **kw)

    async def acomplete(self, request: Any, **kw: Any) -> Any:
        """Route `request` and return the answer (a Completion)."""
        from llmrouter.completion import acomplete

        return await acomplete(self, request, **kw)

    def stream(self, request: Any, **kw: Any) -> Any:
        """Route `request` and yield its answer's chunks (an async iterator of StreamChunk)."""
        from llmrouter.completion import astream

        return astream(self, request, **kw)


_CACHED_FIELDS = ("route", "confidence", "scores", "reason", "truncated", "request_tokens", "decider")


def _cacheable(d: Decision) -> dict[str, Any]:
    return {k: v for k, v in d.to_json().items() if k in _CACHED_FIELDS}


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)


def model_digest(path: Path, spec: registry.ModelSpec | None) -> str:
    """The model file's sha256: the manifest's (verified at pull) or computed once and remembered."""
    st = path.stat()
    if spec and spec.sha256 and spec.size == st.st_size:
        return spec.sha256
    memo = user_dir("hashes") / (hashlib.sha256(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:24] + ".json")
    try:
        return json.loads(memo.read_text())["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = registry.sha256_file(path)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps({"path": str(path), "sha256": digest}))
    except OSError:
        pass
    return digest


def attach_head(decider: Any, config: Config) -> None:
    """Give the decider the route table's fitted head; fitted/combined modes need one."""
    from llmrouter.deciders.fitted import FittedHead
    from llmrouter.errors import ConfigError

    path = config.router.head_path(config.path)
    if path is None:
        if config.router.mode in ("fitted", "combined"):
            raise ConfigError(
                f"[router] mode = {config.router.mode!r} needs a fitted head: set [router] head",
                hint="run `llmrouter tune DATA.jsonl --config TABLE --out TUNED.toml`, or use mode = \"scored\"",
            )
        return
    decider.use_head(FittedHead.load(path))


def guess_family(path: Path) -> str:
    """The chat family of a GGUF not in the manifest, from its embedded chat template."""
    try:
        with open(path, "rb") as f:
            head = f.read(4 << 20)
    except OSError:
        return "chatml"
    if b"<|start_header_id|>" in head:
        return "llama3"
    if b"<start_of_turn>" in head:
        return "gemma"
    return "chatml"
