"""ChainStream: one streamed answer over a route's targets."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

from llmrouter.config import Target
from llmrouter.errors import ProviderError, ProviderTimeout
from llmrouter.fallback.breaker import CircuitBreaker
from llmrouter.fallback.chain import FallbackChain
from llmrouter.providers import Provider, StreamChunk
from llmrouter.types import Attempt


class ChainStream:
    """One streamed answer: `start()` tries targets until one sends content, then iterate it.

    Fails before the first content token fall back; a failure after it raises a ProviderError
    (status 502) from the iteration, and the answer must be reported as incomplete.
    """

    def __init__(self, chain: FallbackChain, names: Sequence[str], body: dict[str, Any], *, has_image: bool = False,
                 deadline_s: float | None = None, label: str = "") -> None:
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
