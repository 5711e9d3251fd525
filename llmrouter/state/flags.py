"""A flag raised for some seconds, shared through Redis (SET PX / PTTL / DEL): a target's open
circuit breaker, seen by every process (fallback/breaker.py `share`)."""

from __future__ import annotations

import time
from collections.abc import Callable

from llmrouter.state.link import Link, Write


class SharedFlag:
    def __init__(self, link: Link, key: str, read_ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.link, self.key, self.read_ttl_s, self.clock = link, key, read_ttl_s, clock
        self._read: tuple[float, float] = (0.0, -1e18)  # (raised until, read at)

    def raise_for(self, seconds: float) -> None:
        now = self.clock()
        self._read = (now + seconds, now)
        self.link.later(Write(lambda r: r.set(self.key, "1", px=max(1, int(seconds * 1000)))))

    def lower(self) -> None:
        self._read = (0.0, self.clock())
        self.link.later(Write(lambda r: r.delete(self.key)))

    def remaining(self) -> float:
        """Seconds the flag stays raised (0: not raised, or Redis is down)."""
        now = self.clock()
        until, read_at = self._read
        if now - read_at >= self.read_ttl_s:
            ms = self.link.call(lambda r: r.pttl(self.key), -2)
            until = now + ms / 1000 if ms > 0 else 0.0
            self._read = (until, now)
        return max(0.0, until - now)
