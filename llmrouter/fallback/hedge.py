"""Hedging for non-streamed requests ([fallback] hedge_after_ms): when the first target is slow, a
second attempt goes to the next one and the first answer wins. The extra load is bounded by a
token bucket, like gRPC's retry throttling: every request earns `share` of a hedge, a hedge spends
a whole one, and at most `BURST` may be saved up; so over time at most `share` of the requests
are hedged.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from typing import Any

from llmrouter.errors import ProviderError

BURST = 2.0


class HedgeBudget:
    """How many hedges may go out now; counts what became of them (sent, won, denied)."""

    def __init__(self, share: float) -> None:
        self.share = share
        self._tokens = BURST
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def earn(self) -> None:
        """One more request that might be hedged."""
        with self._lock:
            self._tokens = min(BURST, self._tokens + self.share)

    def spend(self) -> bool:
        """May a hedge go out now? Counts it as sent, or as denied."""
        with self._lock:
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                self.counts["sent"] += 1
                return True
            self.counts["denied"] += 1
            return False

    def won(self) -> None:
        with self._lock:
            self.counts["won"] += 1


async def first_answer(main: asyncio.Task[Any], hedge: asyncio.Task[Any]) -> tuple[Any, bool]:
    """(the result of whichever task answers first, whether it was the hedge); the other is
    cancelled. A failure waits for the other task, unless it is the request's own fault (400, 422)."""
    pending = {main, hedge}
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                err = task.exception()
                if err is None:
                    return task.result(), task is hedge
                if not pending or (isinstance(err, ProviderError) and err.status in (400, 422)):
                    raise err
        raise AssertionError("unreachable: a task always ends with a result or an error")
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
