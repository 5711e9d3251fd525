"""ChainStream: one streamed answer over a route's targets."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

from llmrouter.config import Target
from llmrouter.errors import ProviderError, ProviderTimeout
from llmrouter.fallback.attempts import safe_log
from llmrouter.fallback.breaker import CircuitBreaker
from llmrouter.fallback.chain import FallbackChain, Run
from llmrouter.fallback.continuation import Parts, with_prefill
from llmrouter.providers import Provider, StreamChunk
from llmrouter.types import Attempt, Segment


class ChainStream:
    """One streamed answer: `start()` tries targets until one sends content, then iterate it.

    Failures before the first content token fall back. A failure after it continues the answer
    on the next target that accepts an assistant prefill (the conversation plus the text sent so
    far; only the continuation is streamed on). When none can, the iteration raises a
    ProviderError (status 502) naming the original failure: the answer is incomplete.
    """

    def __init__(self, chain: FallbackChain, names: Sequence[str], body: dict[str, Any], *, has_image: bool = False,
                 deadline_s: float | None = None, label: str = "") -> None:
        self._chain, self._names, self._body, self._has_image = chain, names, body, has_image
        self._run = chain.new_run(label, deadline_s)
        self._buffer: deque[StreamChunk] = deque()
        self._gen: AsyncIterator[StreamChunk] | None = None
        self._breaker: CircuitBreaker | None = None
        self._done = False
        self._parts = Parts()
        self._order: list[str] = []  # the targets start() chose to try, in order
        self.target: str | None = None
        self.continued_by: list[str] = []  # the targets that continued the answer after a cut
        self.attempts: list[Attempt] = self._run.attempts

    @property
    def segments(self) -> list[Segment]:
        """Every target's share of the answer, when it was continued (else empty)."""
        return self._parts.segments() if self.continued_by else []

    async def start(self) -> None:
        self._order = self._chain.order(self._run, self._names, self._has_image)
        await self._open(self._run, self._order, self._body)

    async def _open(self, run: Run, order: Sequence[str], body: dict[str, Any]) -> None:
        idle = self._chain.policy.stream_idle_timeout_s

        async def prime(provider: Provider, target: Target) -> tuple[AsyncIterator[StreamChunk], list[StreamChunk]]:
            return await _prime(provider.stream(body), target, idle)

        (gen, buffered), self.target, self._breaker = await self._chain.walk(run, order, prime)
        self._gen, self._buffer, self._done = gen, deque(buffered), False
        self._parts.begin(self.target, body)

    def __aiter__(self) -> ChainStream:
        return self

    async def __anext__(self) -> StreamChunk:
        while True:
            if self._buffer:
                chunk = self._parts.deliver(self._buffer.popleft())
                if chunk is not None:
                    return chunk
                continue
            if self._done or self._gen is None:
                raise StopAsyncIteration
            try:
                got = await _next(self._gen, self._chain.policy.stream_idle_timeout_s, self.target or "")
            except ProviderError as err:
                cut = self.target
                await _close(self._gen)  # a stalled stream is still open
                self._finish(err)
                if not await self._continue():
                    raise ProviderError(f"{cut} failed after the answer had started; the answer is incomplete: {err}",
                                        status=502, target=cut) from None
                safe_log("info", "stream_continued", route=self._run.label, cut=cut, target=self.target)
                continue
            if got is None:
                self._finish(None)
                raise StopAsyncIteration
            self._buffer.append(got)

    async def _continue(self) -> bool:
        """Carry on with the next target that accepts a prefill; False if none can (or may)."""
        policy, sent = self._chain.policy, self._parts.text()
        if not policy.continue_streams or self._parts.has_tool_calls or not sent.strip():
            return False
        failed = {a.target for a in self.attempts if a.outcome == "failed"}
        now = self._chain._clock()  # like the start, the continuation has the deadline to reach content
        run = replace(self._run, claimed=set(), continuing=True, start=now,
                      deadline=now + self._run.deadline - self._run.start)
        order = [n for n in self._order if n not in failed and self._able(run, n)]  # skips recorded at start
        if not order:
            return False
        try:
            await self._open(run, order, with_prefill(self._body, sent))
        except ProviderError:  # nobody could continue: the original failure stands
            return False
        self.continued_by.append(self.target or "")
        return True

    def _able(self, run: Run, name: str) -> bool:
        if self._chain.targets[name].accepts_prefill:
            return True
        self._chain._record(run, Attempt(target=name, outcome="skipped",
                                         reason="cannot continue: does not accept an assistant prefill"))
        return False

    def _finish(self, err: ProviderError | None) -> None:
        self._done = True
        assert self._breaker is not None
        if err is None:
            self._breaker.success()
            return
        self._breaker.failure()
        ok = self.attempts.pop() if self.attempts and self.attempts[-1].outcome == "ok" else None
        self._chain._record(self._run, Attempt(
            target=self.target or "", outcome="failed", reason=f"cut mid-answer: {str(err).splitlines()[0]}",
            status=err.status, retry=ok.retry if ok else 0, elapsed_ms=ok.elapsed_ms if ok else 0.0,
            continuation=ok.continuation if ok else False))

    async def aclose(self) -> None:
        """Stop early (client gone): frees the connection and gives no verdict on the target."""
        if self._gen is not None and not self._done:
            self._done = True
            if self._breaker is not None:
                self._breaker.release()
            await _close(self._gen)


async def _prime(gen: AsyncIterator[StreamChunk], target: Target, idle: float,
                 ) -> tuple[AsyncIterator[StreamChunk], list[StreamChunk]]:
    """Read `gen` up to its first content token (or its end) within the target's first-token limit."""
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
