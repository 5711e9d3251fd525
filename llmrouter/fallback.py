"""One answer per request from a route's targets, surviving the ones that fail: deadlines,
retries, Retry-After, circuit breakers and the streaming rules, in one place.

The rules, in the order they apply to each request:
- Targets are tried in the route's order, each at most once per request (a target listed twice,
  or a cyclic config, gives a "listed twice" skip, never a second visit).
- One total deadline covers every retry, backoff and fallback; each attempt also stops at the
  target's `timeout_s`. A stream's deadline covers reaching its first content token; after that
  an idle-stall timeout guards every chunk.
- Only failures where the same target may answer if asked again are retried on it, up to its own
  `max_retries` (else [fallback]'s), with jittered backoff, or after Retry-After when the target
  gives one (up to a cap, else the next target gets the request): connect errors, broken
  connections, 408, 429 and 5xx. A timed-out attempt
  is not retried on the same target: it may still be running there (a second bill) and the
  deadline is better spent on the next target.
- A deterministic 4xx (400, 422) ends the request with that error. A context-length error sends
  the request on only to targets with a larger context window. Other 4xx (401, 403, 404: a key
  or model problem of that target) move on to the next target.
- Each target has a circuit breaker, shared by all requests: after `breaker_failures` failures
  in a row it opens and the target is skipped; after `breaker_cooldown_s` one request probes it
  (half-open) and closes it again on success. When every target of a route is open, the request
  fails at once with a 503 whose retry_after says when the first probe is due.
- A stream that fails before its first content token falls back like any other attempt; once
  content has been sent, a failure ends the stream with an error, never a truncated success.
This module is the only retry layer: providers and their HTTP client never retry.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

import httpx
import structlog

from llmrouter.config import FallbackPolicy, Target
from llmrouter.errors import AllTargetsFailed, ContextTooLong, ProviderError, ProviderTimeout, RequestError
from llmrouter.providers import Provider, StreamChunk, provider_for, shares_client
from llmrouter.providers.base import make_client
from llmrouter.types import Attempt

log = structlog.get_logger("llmrouter")


def safe_log(level: str, event: str, **fields: Any) -> None:
    """Log on the request path; like logging.Handler.handleError, a broken sink never fails a request."""
    try:
        getattr(log, level)(event, **fields)
    except (OSError, ValueError):
        pass


class CircuitBreaker:
    """Closed, open or half-open for one target; thread-safe, driven by a monotonic clock."""

    def __init__(self, failures: int = 5, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.failures, self.cooldown_s, self._clock = failures, cooldown_s, clock
        self._lock = threading.Lock()
        self._streak = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> Literal["closed", "open", "half_open"]:
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._clock() - self._opened_at >= self.cooldown_s else "open"

    def retry_in(self) -> float:
        """Seconds until the next probe may go out (0 when closed)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.cooldown_s - self._clock())

    def allow(self) -> bool:
        """May a request go to this target now? In half-open, True for exactly one probe at a time."""
        with self._lock:
            state = self.state
            if state == "closed":
                return True
            if state == "half_open" and not self._probing:
                self._probing = True
                return True
            return False

    def success(self) -> None:
        with self._lock:
            self._streak, self._opened_at, self._probing = 0, None, False

    def failure(self) -> None:
        with self._lock:
            self._streak += 1
            if self._probing or self._streak >= self.failures:
                self._opened_at, self._probing = self._clock(), False

    def release(self) -> None:
        """The request ended without a verdict on the target (client left, request error)."""
        with self._lock:
            self._probing = False


Call = Callable[[Provider, Target], Awaitable[Any]]


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
        """(ProviderResponse, target name, attempts) from the first target that answers."""

        async def call(provider: Provider, _target: Target) -> Any:
            return await provider.complete(body)

        result, name, attempts, breaker = await self._run(names, call, has_image, deadline_s, label)
        breaker.success()
        return result, name, attempts

    def stream(self, names: Sequence[str], body: dict[str, Any], *, has_image: bool = False,
               deadline_s: float | None = None, label: str = "") -> ChainStream:
        """A ChainStream; `await s.start()` picks the target, then iterate it for chunks."""
        return ChainStream(self, names, body, has_image, deadline_s, label)

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

    def _record(self, attempts: list[Attempt], attempt: Attempt, label: str) -> None:
        attempts.append(attempt)
        safe_log("warning" if attempt.outcome == "failed" else "info", "provider_attempt", route=label,
                 **attempt.model_dump(exclude_defaults=True))
        for listener in self.listeners:
            listener(attempt)

    async def _run(self, names: Sequence[str], call: Call, has_image: bool, deadline_s: float | None,
                   label: str) -> tuple[Any, str, list[Attempt], CircuitBreaker]:
        start = self._clock()
        deadline = start + (self.policy.deadline_s if deadline_s is None else deadline_s)
        order, attempts = self.plan(names, has_image)
        for a in attempts:
            self._record([], a, label)
        too_small = 0  # after a context-length error, only larger windows may take the request
        last: ProviderError | None = None
        for name in order:
            target, breaker = self.targets[name], self.breakers[name]
            if target.context_window <= too_small:
                why = f"context window {target.context_window} is not larger than one that was too small"
                self._record(attempts, Attempt(target=name, outcome="skipped", reason=why), label)
                continue
            if not breaker.allow():
                why = "circuit half-open, probe in flight" if breaker.state == "half_open" else (
                    f"circuit open (probe in {breaker.retry_in():.1f}s)")
                self._record(attempts, Attempt(target=name, outcome="skipped", reason=why), label)
                continue
            retry, waited = 0, 0.0
            try:
                while True:
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        raise self._deadline_error(deadline - start, attempts)
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
                    except Exception as exc:  # a bug in an adapter: the next target may still answer
                        safe_log("exception", "provider_bug", target=name)
                        err, own_fault = ProviderError(f"{name}: adapter failed: {type(exc).__name__}: {exc}",
                                                       target=name), True
                    else:
                        self._record(attempts, Attempt(target=name, outcome="ok", retry=retry, waited_s=waited,
                                     elapsed_ms=(self._clock() - t0) * 1000), label)
                        return result, name, attempts, breaker
                    last = err
                    self._record(attempts, Attempt(target=name, outcome="failed", reason=str(err).split("\n")[0],
                                 status=err.status, retry=retry, waited_s=waited,
                                 elapsed_ms=(self._clock() - t0) * 1000), label)
                    if isinstance(err, ContextTooLong) or err.status == 413:
                        breaker.release()
                        too_small = max(too_small, target.context_window)
                        break
                    if err.status in (400, 422):
                        breaker.release()
                        raise err  # the request itself is wrong: another target would refuse it too
                    if not own_fault:
                        breaker.release()
                        break
                    breaker.failure()
                    delay = self._delay(err, target, retry)
                    if delay is None or delay >= deadline - self._clock() or breaker.state != "closed":
                        break
                    await self._sleep(delay)
                    retry, waited = retry + 1, delay
            except BaseException:
                breaker.release()
                raise
        if last is not None and self._clock() >= deadline:
            raise self._deadline_error(deadline - start, attempts)
        raise self._all_failed(label, names, attempts, last)

    def _deadline_error(self, budget: float, attempts: list[Attempt]) -> ProviderTimeout:
        tried = summarize_attempts(attempts)
        return ProviderTimeout(f"request deadline of {budget:.2f}s exceeded ({tried or 'no target answered'})",
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


class ChainStream:
    """One streamed answer: `start()` tries targets until one sends content, then iterate it.

    Fails before the first content token fall back; a failure after it raises a ProviderError
    (status 502) from the iteration, and the answer must be reported as incomplete.
    """

    def __init__(self, chain: FallbackChain, names: Sequence[str], body: dict[str, Any], has_image: bool,
                 deadline_s: float | None, label: str) -> None:
        self._chain, self._names, self._body = chain, names, body
        self._has_image, self._deadline_s, self._label = has_image, deadline_s, label
        self._buffer: deque[StreamChunk] = deque()
        self._gen: AsyncIterator[StreamChunk] | None = None
        self._breaker: CircuitBreaker | None = None
        self._done = False
        self.target: str | None = None
        self.attempts: list[Attempt] = []

    async def start(self) -> None:
        idle = self._chain.policy.stream_idle_timeout_s

        async def prime(provider: Provider, target: Target) -> tuple[AsyncIterator[StreamChunk], list[StreamChunk]]:
            gen = provider.stream(self._body)
            buffered: list[StreamChunk] = []
            limit = target.first_token_timeout_s
            try:
                async with asyncio.timeout(limit):
                    while True:
                        chunk = await _next(gen, idle, target.name)
                        if chunk is None:
                            return gen, buffered  # a whole (empty) answer
                        buffered.append(chunk)
                        if chunk.has_content or chunk.finish_reason:
                            return gen, buffered
            except TimeoutError:
                await _close(gen)
                raise ProviderTimeout(f"{target.name}: no first token within {limit:.2f}s", target=target.name) from None
            except BaseException:
                await _close(gen)
                raise

        (gen, buffered), self.target, self.attempts, self._breaker = await self._chain._run(
            self._names, prime, self._has_image, self._deadline_s, self._label)
        self._gen, self._buffer = gen, deque(buffered)

    def __aiter__(self) -> ChainStream:
        return self

    async def __anext__(self) -> StreamChunk:
        if self._buffer:
            return self._buffer.popleft()
        if self._done or self._gen is None:
            raise StopAsyncIteration
        try:
            chunk = await _next(self._gen, self._chain.policy.stream_idle_timeout_s, self.target or "")
        except ProviderError as err:
            self._finish(err)
            raise ProviderError(f"{self.target} failed after the answer had started; the answer is incomplete: {err}",
                                status=502, target=self.target) from None
        if chunk is None:
            self._finish(None)
            raise StopAsyncIteration
        return chunk

    def _finish(self, err: ProviderError | None) -> None:
        self._done = True
        assert self._breaker is not None
        if err is None:
            self._breaker.success()
            return
        self._breaker.failure()
        ok = self.attempts.pop() if self.attempts and self.attempts[-1].outcome == "ok" else None
        self._chain._record(self.attempts, Attempt(
            target=self.target or "", outcome="failed", reason=f"cut mid-answer: {str(err).splitlines()[0]}",
            status=err.status, retry=ok.retry if ok else 0, elapsed_ms=ok.elapsed_ms if ok else 0.0), self._label)

    async def aclose(self) -> None:
        """Stop early (client gone): frees the connection and gives no verdict on the target."""
        if self._gen is not None and not self._done:
            self._done = True
            if self._breaker is not None:
                self._breaker.release()
            await _close(self._gen)


def summarize_attempts(attempts: Sequence[Attempt]) -> str:
    """'a: HTTP 500 (x3); b: circuit open' - what went wrong, one clause per target."""
    parts: dict[str, list[str]] = {}
    for a in attempts:
        if a.outcome != "ok":
            reason = a.reason.removeprefix(f"{a.target}: ")
            parts.setdefault(a.target, []).append(reason)
    return "; ".join(
        f"{t}: {rs[-1]}" + (f" (x{len(rs)})" if len(rs) > 1 else "") for t, rs in parts.items()
    )


async def _next(gen: AsyncIterator[StreamChunk], idle: float, name: str) -> StreamChunk | None:
    """The next chunk, None at a proper end; a stall longer than `idle` is a ProviderTimeout."""
    try:
        async with asyncio.timeout(idle):
            return await anext(gen)
    except StopAsyncIteration:
        return None
    except TimeoutError:
        raise ProviderTimeout(f"{name}: stream stalled for {idle:.1f}s", target=name) from None


async def _close(gen: AsyncIterator[StreamChunk]) -> None:
    aclose = getattr(gen, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # the stream already failed; closing it must not hide that
            pass
