"""FallbackChain: the targets of a route tried in order under one FallbackPolicy (rules in the package docstring)."""

from __future__ import annotations

import asyncio
import random
import time
import weakref
from dataclasses import dataclass, field, replace
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import httpx

from llmrouter.config import FallbackPolicy, Target
from llmrouter.errors import AllTargetsFailed, ContextTooLong, ProviderError, ProviderTimeout, RequestError
from llmrouter.fallback.attempts import safe_log, summarize_attempts
from llmrouter.fallback.breaker import CircuitBreaker
from llmrouter.fallback.health import Health
from llmrouter.fallback.hedge import HedgeBudget, first_answer
from llmrouter.providers import Provider, provider_for, shares_client
from llmrouter.providers.base import make_client
from llmrouter.types import Attempt

Call = Callable[[Provider, Target], Awaitable[Any]]


@dataclass
class Run:
    """One request's walk over its targets; a hedge's second walk shares its attempts and claims."""

    label: str
    start: float
    deadline: float
    attempts: list[Attempt] = field(default_factory=list)
    claimed: set[str] = field(default_factory=set)  # targets a walk of this request has taken
    hedge: bool = False  # this walk is a hedge
    continuing: bool = False  # this walk continues a stream cut on another target


class MoveOn(Exception):
    """A target failed in a way that hands the request to the next one."""

    def __init__(self, error: ProviderError, too_small: int = 0) -> None:
        super().__init__(str(error))
        self.error, self.too_small = error, too_small  # too_small: a context window that was too small


class FallbackChain:
    """Calls targets in order under one FallbackPolicy; one per Router, shared by its requests."""

    def __init__(
        self,
        targets: Mapping[str, Target],
        policy: FallbackPolicy | None = None,
        *,
        providers: Mapping[str, Provider] | None = None,
        rng: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        self.policy = policy or FallbackPolicy()
        default = self.policy.first_token_timeout_s  # each target's own wins
        self.targets = {n: t if t.first_token_timeout_s is not None or default is None
                        else t.model_copy(update={"first_token_timeout_s": default}) for n, t in targets.items()}
        self._rng, self._clock, self._sleep = rng, clock, sleep
        self._fixed: dict[str, Provider] = dict(providers or {})  # injected, or local (one Llama each)
        # An httpx client belongs to one event loop: remote providers are kept per loop.
        self._per_loop: weakref.WeakKeyDictionary[Any, tuple[httpx.AsyncClient, dict[str, Provider]]] = (
            weakref.WeakKeyDictionary()
        )
        self.breakers = {
            name: CircuitBreaker(self.policy.breaker_failures, self.policy.breaker_cooldown_s, clock)
            for name in self.targets
        }
        self.listeners: list[Callable[[Attempt], None]] = []
        self.hedges = HedgeBudget(self.policy.hedge_budget)
        self.health = Health(clock) if self.policy.health_ordering else None
        if self.health is not None:
            self.listeners.append(self.health)

    def provider(self, name: str) -> Provider:
        if name in self._fixed:
            return self._fixed[name]
        target = self.targets[name]
        if not shares_client(target):  # in-process: one adapter (and its model) for the chain's life
            return self._fixed.setdefault(name, provider_for(target, None))
        loop = asyncio.get_running_loop()
        if loop not in self._per_loop:
            self._per_loop[loop] = (make_client(), {})
        client, providers = self._per_loop[loop]
        if name not in providers:
            providers[name] = provider_for(target, client)
        return providers[name]

    async def aclose(self) -> None:
        """Close the HTTP connections this event loop opened."""
        entry = self._per_loop.pop(asyncio.get_running_loop(), None)
        if entry:
            await entry[0].aclose()

    async def complete(self, names: Sequence[str], body: dict[str, Any], *, has_image: bool = False,
                       deadline_s: float | None = None, label: str = "") -> tuple[Any, str, list[Attempt]]:
        """(ProviderResponse, target name, attempts) from the first target that answers; with
        hedging on, a slow first target gets a second attempt racing it on the next one."""

        async def call(provider: Provider, _target: Target) -> Any:
            return await provider.complete(body)

        run = self.new_run(label, deadline_s)
        order = self.order(run, names, has_image)
        result, name, breaker = await self._hedged(run, order, call)
        breaker.success()
        return result, name, run.attempts

    def new_run(self, label: str, deadline_s: float | None = None) -> Run:
        start = self._clock()
        return Run(label, start, start + (self.policy.deadline_s if deadline_s is None else deadline_s))

    def order(self, run: Run, names: Sequence[str], has_image: bool) -> list[str]:
        """The targets to try, healthy ones first when health_ordering is on; skips are recorded."""
        order, skipped = self.plan(names, has_image)
        for a in skipped:
            self._record(run, a)
        if self.health is not None:
            order, problems = self.health.order(order)
            if problems:
                safe_log("info", "targets_reordered", route=run.label, tried_later=sorted(problems))
        return order

    def plan(self, names: Sequence[str], has_image: bool) -> tuple[list[str], list[Attempt]]:
        """The targets to try in order, and the skips decided before any call."""
        order, skipped, seen = [], [], set()
        for name in names:
            if name in seen:
                skipped.append(Attempt(target=name, outcome="skipped", reason="listed twice; tried once"))
                continue
            seen.add(name)
            if has_image and not self.targets[name].vision:
                skipped.append(Attempt(target=name, outcome="skipped", reason="text-only target; request has an image"))
                continue
            order.append(name)
        if not order and has_image and seen:
            raise RequestError(
                "this request has an image but no target of its route accepts images",
                hint="add a target with vision = true to the route, or send text only",
            )
        return order, skipped

    def _delay(self, err: ProviderError, target: Target, retry: int) -> float | None:
        """Seconds to wait before retrying `target`, or None to move on to the next target."""
        limit = self.policy.max_retries if target.max_retries is None else target.max_retries
        if retry >= limit or not err.retryable or isinstance(err, ProviderTimeout):
            return None
        if err.retry_after is not None:
            if err.retry_after > self.policy.retry_after_cap_s:
                return None
            return err.retry_after * (1 + 0.1 * self._rng())  # spread the herd, never come early
        return self._rng() * min(self.policy.backoff_cap_s, self.policy.backoff_base_s * 2**retry)

    def _record(self, run: Run, attempt: Attempt) -> None:
        if run.hedge or run.continuing:
            attempt = attempt.model_copy(update={"hedge": run.hedge, "continuation": run.continuing})
        run.attempts.append(attempt)
        safe_log("warning" if attempt.outcome == "failed" else "info", "provider_attempt", route=run.label,
                 **attempt.model_dump(exclude_defaults=True))
        for listener in self.listeners:
            listener(attempt)

    async def _hedged(self, run: Run, order: list[str], call: Call) -> tuple[Any, str, CircuitBreaker]:
        """`walk` the targets; past the first target's hedge_after_ms, a second walk races it."""
        first = self.targets[order[0]] if order else None
        after_ms = first.hedge_after_ms if first and first.hedge_after_ms is not None else self.policy.hedge_after_ms
        if after_ms is None or len(order) < 2:
            return await self.walk(run, order, call)
        self.hedges.earn()
        main = asyncio.ensure_future(self.walk(run, order, call))
        done, _ = await asyncio.wait({main}, timeout=after_ms / 1000)
        if done or all(n in run.claimed for n in order) or not self.hedges.spend():
            return await main
        hedge = asyncio.ensure_future(self.walk(replace(run, hedge=True), order, call))
        result, by_hedge = await first_answer(main, hedge)
        if by_hedge:
            self.hedges.won()
        return result

    async def walk(self, run: Run, order: Sequence[str], call: Call) -> tuple[Any, str, CircuitBreaker]:
        """(result, target, its breaker) from the first target of `order` that answers. Targets
        another walk of the same request has taken (a hedge) are left to it."""
        too_small = 0  # after a context-length error, only larger windows may take the request
        last: ProviderError | None = None
        for name in order:
            if name in run.claimed:
                continue
            run.claimed.add(name)
            target, breaker = self.targets[name], self.breakers[name]
            if target.context_window <= too_small:
                why = f"context window {target.context_window} is not larger than one that was too small"
                self._record(run, Attempt(target=name, outcome="skipped", reason=why))
                continue
            if not breaker.allow():
                why = "circuit half-open, probe in flight" if breaker.state == "half_open" else (
                    f"circuit open (probe in {breaker.retry_in():.1f}s)")
                self._record(run, Attempt(target=name, outcome="skipped", reason=why))
                continue
            try:
                return await self._attempt(run, name, call), name, breaker
            except MoveOn as move:
                last, too_small = move.error, max(too_small, move.too_small)
        if last is not None and self._clock() >= run.deadline:
            raise self._deadline_error(run)
        raise self._all_failed(run.label, order, run.attempts, last)

    async def _attempt(self, run: Run, name: str, call: Call) -> Any:
        """`name`'s answer, retried on it while that is worth it; MoveOn hands the request on."""
        target, breaker = self.targets[name], self.breakers[name]
        retry, waited = 0, 0.0
        try:
            while True:
                remaining = run.deadline - self._clock()
                if remaining <= 0:
                    raise self._deadline_error(run)
                t0 = self._clock()
                try:
                    async with asyncio.timeout(min(target.timeout_s, remaining)):
                        result = await call(self.provider(name), target)
                except TimeoutError:
                    err: ProviderError = ProviderTimeout(
                        f"{name}: no answer within {min(target.timeout_s, remaining):.2f}s", target=name)
                    own_fault = target.timeout_s <= remaining  # not just the request's deadline
                except ProviderError as exc:
                    err, own_fault = exc, True
                except asyncio.CancelledError:
                    self._record(run, Attempt(target=name, outcome="cancelled", reason="cancelled (a hedge "
                                 "answered first, or the client left)", elapsed_ms=(self._clock() - t0) * 1000))
                    raise
                except Exception as exc:  # a bug in an adapter: the next target may still answer
                    safe_log("exception", "provider_bug", target=name)
                    err, own_fault = ProviderError(f"{name}: adapter failed: {type(exc).__name__}: {exc}",
                                                   target=name), True
                else:
                    self._record(run, Attempt(target=name, outcome="ok", retry=retry, waited_s=waited,
                                              elapsed_ms=(self._clock() - t0) * 1000))
                    return result
                self._record(run, Attempt(target=name, outcome="failed", reason=str(err).split("\n")[0],
                                          status=err.status, retry=retry, waited_s=waited,
                                          elapsed_ms=(self._clock() - t0) * 1000))
                delay = self._after_failure(run, err, own_fault, target, retry)
                await self._sleep(delay)
                retry, waited = retry + 1, delay
        except BaseException:
            breaker.release()
            raise

    def _after_failure(self, run: Run, err: ProviderError, own_fault: bool, target: Target, retry: int) -> float:
        """Seconds to wait before retrying `target`; raises MoveOn (next target) or the error itself."""
        breaker = self.breakers[target.name]
        if isinstance(err, ContextTooLong) or err.status == 413:
            breaker.release()
            raise MoveOn(err, target.context_window)
        if err.status in (400, 422):
            breaker.release()
            if run.continuing:  # it refused the prefill: another target may continue
                raise MoveOn(err)
            raise err  # the request itself is wrong: another target would refuse it too
        if not own_fault:
            breaker.release()
            raise MoveOn(err)
        breaker.failure()
        delay = self._delay(err, target, retry)
        if delay is None or delay >= run.deadline - self._clock() or breaker.state != "closed":
            raise MoveOn(err)
        return delay

    def _deadline_error(self, run: Run) -> ProviderTimeout:
        tried = summarize_attempts(run.attempts)
        return ProviderTimeout(f"request deadline of {run.deadline - run.start:.2f}s exceeded "
                               f"({tried or 'no target answered'})",
                               status=504, hint="raise the deadline, or add a faster fallback target")

    def _all_failed(self, label: str, names: Sequence[str], attempts: list[Attempt],
                    last: ProviderError | None) -> ProviderError:
        if not names:
            return AllTargetsFailed(f"route {label!r} has no targets", status=503,
                                    hint="list targets for the route in the config")
        open_skips = [a for a in attempts if a.outcome == "skipped" and a.reason.startswith("circuit")]
        if last is None and open_skips:
            wait = min(self.breakers[a.target].retry_in() for a in open_skips)
            return AllTargetsFailed(
                f"every target of route {label!r} is failing and has its circuit open; next probe in {wait:.1f}s",
                status=503, retry_after=max(wait, 0.1))
        if isinstance(last, ContextTooLong):
            return ContextTooLong(f"the request is too long for every target of route {label!r} ({last})",
                                  status=400, target=last.target)
        tried = summarize_attempts(attempts)
        retry_after = last.retry_after if last is not None else None
        return AllTargetsFailed(f"all targets of route {label!r} failed: {tried}", status=503, retry_after=retry_after)
