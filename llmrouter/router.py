"""Router: a request in, a validated Decision out, and, through its targets, the answer.

    request -> policy.before (rules) -> decision cache -> cheap stage -> decider pool -> validate
            -> policy.after -> Decision
    Decision -> Plan -> Answerer -> FallbackChain -> providers -> Completion

Everything before the decider pool needs no model pass and runs where the request is (on the
event loop for the async paths): a pinned, rule-decided, sticky or cached request never waits for
the router model, and neither does one the cheap stage (head/cheap.py) is confident about. The
rest queue for the model: the pool's workers decide the waiting requests together, in batches
(deciders/pool.py). One that waits past `decide_wait_s` gets the cheap stage's decision, with the
reason. Decider failures never reach the caller: they become the default route with
`source="default"` and the reason. The Router owns its runtime: the deciders and their pool, the
cheap stage, cache, policy and fallback chain.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmrouter import log as logmod
from llmrouter import models
from llmrouter.cache import DecisionCache, cache_key
from llmrouter.config import Config, FallbackPolicy, RouteTable
from llmrouter.deciders import Decider, build_decider
from llmrouter.deciders.pool import DeciderPool
from llmrouter.errors import DeciderError, UnknownModel
from llmrouter.head import CheapStage
from llmrouter.policy import Policy, PreDecision, restrict
from llmrouter.policy.engine import build_policy, decision_log_fields
from llmrouter.prompts import RouterPrompt
from llmrouter.state import SharedState, connect
from llmrouter.types import Completion, Decision, Request, Timings, Verdict
from llmrouter.validate import clean_scores, extract_route

if TYPE_CHECKING:  # answering (httpx and the providers) loads on first use: `route` never pays for it
    from llmrouter.completion import Answerer, CompletionStream, Plan
    from llmrouter.fallback import FallbackChain
    from llmrouter.providers import StreamChunk

log = logmod.get_logger("llmrouter")

_CACHED_FIELDS = ("route", "confidence", "scores", "reason", "truncated", "request_tokens", "decider")
ROUTER_MODEL = "router"  # the `model` that asks for routing (also "router:<table>")


class Router:
    """Decides routes for requests with the configured local model and route table, and answers
    them through the routes' targets."""

    def __init__(
        self,
        config: Config,
        *,
        decider: Decider | None = None,
        cache: DecisionCache | None = None,
        policy: Policy | None = None,
        fallback: FallbackPolicy | None = None,
        state: SharedState | None = None,
    ) -> None:
        self.config = config
        self.table = config.table
        settings = config.router
        # [state]: caps, sessions and breakers shared with every process on the same Redis
        self.state = state if state is not None else connect(config.state)
        self.policy: Policy = policy if policy is not None else build_policy(config, self.state)
        self.prompt = RouterPrompt.load(settings.prompt)
        spec = models.spec_for(settings.model)
        self.model_name = spec.name if spec else Path(settings.model).name
        deciders = [decider] if decider is not None else [build_decider(config, self.prompt)
                                                          for _ in range(settings.workers)]
        self.decider: Decider = deciders[0]
        self.pool = DeciderPool(deciders, max_batch=settings.batch_limit)
        self.cheap: CheapStage = getattr(self.decider, "cheap_stage", None) or cheap_stage_for(self.table)
        self.model_sha256: str = getattr(self.decider, "model_id", "") or "custom"
        if cache is None and settings.cache:
            cache = DecisionCache(settings.cache_path, size_mb=settings.cache_size_mb)
        if cache is not None and self.state is not None and self.state.settings.decision_cache:
            cache.share(self.state.decisions())
        self.cache = cache
        self.use_fallback(fallback or config.fallback)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None, **router_overrides: Any) -> Router:
        """A Router for a route table file (None: the packaged default), with settings overridden."""
        config = Config.load(path)
        if router_overrides:
            config = config.with_router(**router_overrides)
        return cls(config)

    def use_fallback(self, policy: FallbackPolicy) -> None:
        """Call targets under `policy` from now on (a new chain: breakers start closed)."""
        self.fallback = policy
        self._chain: FallbackChain | None = None
        self._answers: Answerer | None = None

    @property
    def chain(self) -> FallbackChain:
        """The fallback chain over this table's targets (its breakers are shared by every request)."""
        if self._chain is None:
            from llmrouter.fallback import FallbackChain

            self._chain = FallbackChain(self.config.targets, self.fallback)
            if self.state is not None:
                for name, breaker in self._chain.breakers.items():
                    breaker.share(self.state.breaker_flag(name))
        return self._chain

    @property
    def answers(self) -> Answerer:
        """What calls the targets of a decided request and tells the policy how it went."""
        if self._answers is None:
            from llmrouter.completion import Answerer

            self._answers = Answerer(self.config, self.chain, self.policy)
        return self._answers

    # --- deciding ------------------------------------------------------------------------
    def decide(self, request: Any, *, explain: bool = False, use_cache: bool = True) -> Decision:
        """The route for `request` (text, chat messages or a Request). Raises only RequestError."""
        t0 = time.perf_counter()
        req = Request.of(request)
        pre, decision = self._without_model(req, explain, use_cache, t0)
        if decision is None:
            decision = self._from_model(req.text, explain, use_cache, t0)
        return self._finish(req, pre, decision)

    async def adecide(self, request: Request, allowed: tuple[str, ...] | None = None) -> Decision:
        """decide(request) without blocking the event loop, and without waiting for the model
        unless the model is needed: rules, pins, stickiness, the cache and a confident cheap
        stage decide on the loop. The rest queue for the model (decided in batches, see
        deciders/pool.py); one that waits longer than `decide_wait_s` gets the cheap stage's
        decision instead, with the reason. `allowed`: the only routes the caller may get."""
        t0 = time.perf_counter()
        req = Request.of(request)
        pre, decision = self._without_model(req, False, True, t0)
        if decision is None:
            decision = await self._afrom_model(req.text, t0)
        return self._finish(req, pre, decision, allowed)

    def _without_model(self, req: Request, explain: bool, use_cache: bool, t0: float
                       ) -> tuple[PreDecision | None, Decision | None]:
        """What the policy's rules, the decision cache and a confident cheap stage decide."""
        pre = self.policy.before(req)
        if pre is not None and pre.decision is not None:
            return pre, pre.decision  # a rule decided: the model is not asked
        if use_cache and self.cache is not None:
            hit = self._from_cache(self.cache, self._key(req.text, explain), t0)
            if hit is not None:
                return pre, hit
        if not explain and self.config.router.cascade:
            scores, decides = self.cheap.decide(req.text)
            if decides:
                return pre, self._cheap_decision(scores, None, t0)
        return pre, None

    def _finish(self, req: Request, pre: PreDecision | None, decision: Decision,
                allowed: tuple[str, ...] | None = None) -> Decision:
        if pre is not None and pre.allowed is not None and decision is not pre.decision:
            decision = restrict(decision, pre.allowed, self.table.default_route)
        if allowed and decision.route not in allowed:
            decision = restrict(decision, allowed, self.table.default_route)
        decision = self.policy.after(req, decision)
        self._log(decision, decision_log_fields(req, self.config))
        return decision

    def _from_model(self, text: str, explain: bool, use_cache: bool, t0: float) -> Decision:
        try:
            verdict = self.pool.decide(text, explain)
        except DeciderError as exc:
            return self.default_decision(f"decider failed: {exc}", t0)
        return self._model_decision(text, verdict, explain, use_cache, t0)

    async def _afrom_model(self, text: str, t0: float) -> Decision:
        wait_s = self.fallback.decide_wait_s
        job = self.pool.submit(text)
        answer = asyncio.wrap_future(job)
        try:
            try:
                verdict = await asyncio.wait_for(asyncio.shield(answer), wait_s)
            except TimeoutError:
                if job.cancel():  # still queued: the cheap stage answers instead
                    reason = (f"router model busy: waited {wait_s or 0.0:.1f}s with {self.pool.waiting} "
                              "request(s) queued; the cheap stage decided")
                    return self._cheap_decision(self.cheap.scores(text), reason, t0)
                verdict = await answer  # already being decided: it is nearly done
        except DeciderError as exc:
            return self.default_decision(f"decider failed: {exc}", t0)
        return self._model_decision(text, verdict, False, True, t0)

    def _key(self, text: str, explain: bool) -> str:
        return cache_key(
            text,
            table_fingerprint=self.table.fingerprint,
            prompt_version=self.prompt.version,
            model_sha256=self.model_sha256,
            settings={**self.config.router.decider_settings(), "explain": explain,
                      "head_digest": getattr(self.decider, "cache_salt", "")},
        )

    def _from_cache(self, cache: DecisionCache, key: str, t0: float) -> Decision | None:
        hit = cache.get(key)
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

    def _model_decision(self, text: str, raw: object, explain: bool, use_cache: bool, t0: float) -> Decision:
        """The decider's answer, validated (and cached when valid)."""
        route, why = extract_route(raw, self.table)
        if route is None:
            return self.default_decision(why, t0)
        verdict = raw if isinstance(raw, Verdict) else _as_verdict(raw, route, self.decider.name)
        scores = clean_scores(verdict.scores, self.table)
        decision = Decision(
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
        if use_cache and self.cache is not None:
            self.cache.set(self._key(text, explain),
                           {k: v for k, v in decision.to_json().items() if k in _CACHED_FIELDS})
        return decision

    def _cheap_decision(self, scores: dict[str, float], reason: str | None, t0: float) -> Decision:
        """The cheap stage's route (reason: why the model was not asked, when it was meant to be)."""
        route = max(scores, key=scores.__getitem__)
        return Decision(
            route=route,
            source="cheap",
            confidence=scores[route],
            scores=scores,
            reason=reason,
            prompt_version=self.prompt.version,
            model=self.model_name,
            decider=self.cheap.name,
            timings=Timings(total_ms=_ms(t0)),
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

    def _log(self, d: Decision, extra: dict[str, Any]) -> None:
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
            reason=d.reason if d.source in ("default", "cheap") else None,
            rule=d.rule,
            escalated_from=d.escalated_from,
            policy=list(d.policy) or None,
            **extra,
            **{k: round(v, 3) for k, v in d.timings.model_dump().items()},
        )

    # --- answering -----------------------------------------------------------------------
    async def plan(self, request: Any, model: str | None = None, allowed: tuple[str, ...] | None = None) -> Plan:
        """What answering `request` means: its decision and targets; a `model` naming a target (or
        a target's model id) bypasses routing. `allowed`: the routes the decision must stay in."""
        from llmrouter.completion import Plan

        req = Request.of(request)
        if model is None or asks_for_routing(model):
            decision = await self.adecide(req, allowed)
            return Plan(req, decision, self.table.targets_of(decision.route), decision.route)
        named = self.targets_named(model)
        if not named:
            raise UnknownModel(f"unknown model {model!r}: use 'router' or one of: {', '.join(sorted(self.config.targets))}")
        return Plan(req, None, named, f"model:{model}")

    def targets_named(self, model: str) -> tuple[str, ...]:
        """The targets a `model` other than "router" calls: the target of that name, else every
        target serving that model id (in table order); () when none."""
        targets = self.config.targets
        return (model,) if model in targets else tuple(n for n, t in targets.items() if t.model == model)

    async def acomplete(self, request: Any, *, model: str | None = None, deadline_s: float | None = None,
                        allowed: tuple[str, ...] | None = None, **params: Any) -> Completion:
        """Route `request` and return the answer (a Completion)."""
        return await self.answers.complete(await self.plan(request, model, allowed), params, deadline_s)

    def complete(self, request: Any, **kw: Any) -> Completion:
        """The blocking form of `acomplete`, for scripts and notebooks."""
        from llmrouter.completion import run_sync

        async def main() -> Completion:
            try:
                return await self.acomplete(request, **kw)
            finally:
                await self.chain.aclose()

        done: Completion = run_sync(main)
        return done

    async def open_stream(self, request: Any, *, model: str | None = None, deadline_s: float | None = None,
                          allowed: tuple[str, ...] | None = None, **params: Any) -> CompletionStream:
        """Route `request` and start streaming; raises before any chunk if no target could start."""
        return await self.answers.stream(await self.plan(request, model, allowed), params, deadline_s)

    async def stream(self, request: Any, **kw: Any) -> AsyncIterator[StreamChunk]:
        """Route `request` and yield its answer's chunks as they arrive."""
        stream = await self.open_stream(request, **kw)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()

    def close(self) -> None:
        self.pool.close()
        if self.cache:
            self.cache.close()
        if self.state is not None:
            self.state.close()


def asks_for_routing(model: str) -> bool:
    """Whether a request's `model` asks the router to decide ("router" or "router:<table>")."""
    return model == ROUTER_MODEL or model.startswith(ROUTER_MODEL + ":")


def cheap_stage_for(table: RouteTable) -> CheapStage:
    """A zero-shot cheap stage from the table's own words (descriptions and examples)."""
    return CheapStage.from_examples(table.names, [[r.description, *r.examples] for r in table.routes])


def _as_verdict(raw: object, route: str, decider: str) -> Verdict:
    """A bare route, JSON text or dict from a custom decider, as a Verdict."""
    data = raw if isinstance(raw, dict) else {}
    reason = data.get("reason")
    return Verdict(route=route, scores=data.get("scores") or {}, reason=reason if isinstance(reason, str) else None,
                   decider=decider)


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 3)
