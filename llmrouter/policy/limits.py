"""Caps that bound what routing can cost: the escalation rate and the spend per key and tier.

Both are sliding windows with running totals (O(1) per request, however busy the window) on an
injectable monotonic clock, so tests move time instead of sleeping. What happens when a cap is
hit is the caller's (policy/engine.py): stay on the cheaper route, ask the client to come back
later (queue: 429 with Retry-After), or reject.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence

from llmrouter.state.link import Read

Clock = Callable[[], float]


class RateWindow:
    """How many decisions went above the cheapest tier ("up") in the last `window_s`, overall
    and per surface."""

    def __init__(self, window_s: float, clock: Clock = time.monotonic) -> None:
        self.window_s, self.clock = window_s, clock
        self._events: deque[tuple[float, str, bool]] = deque()
        self.total: dict[str, int] = {}
        self.ups: dict[str, int] = {}
        self.lock = threading.Lock()

    def _evict(self, now: float) -> None:
        while self._events and self._events[0][0] <= now - self.window_s:
            _, surface, up = self._events.popleft()
            for key in ("", surface) if surface else ("",):
                self.total[key] -= 1
                self.ups[key] -= up

    def record(self, surface: str, up: bool) -> None:
        with self.lock:
            now = self.clock()
            self._evict(now)
            self._events.append((now, surface, up))
            for key in ("", surface) if surface else ("",):
                self.total[key] = self.total.get(key, 0) + 1
                self.ups[key] = self.ups.get(key, 0) + up

    def rate(self, surface: str = "") -> tuple[int, int]:
        """(ups, decisions) in the window; surface "" is every surface."""
        with self.lock:
            self._evict(self.clock())
            return self.ups.get(surface, 0), self.total.get(surface, 0)

    def allows_up(self, max_rate: float, min_requests: int, surface: str = "") -> bool:
        """Whether one more "up" keeps the share at or under `max_rate` (with fewer than
        `min_requests` decisions in the window, counted as if there were `min_requests`)."""
        ups, total = self.rate(surface)
        return ups + 1 <= max_rate * max(total + 1, min_requests) + 1e-9

    def retry_after(self, surface: str = "") -> float:
        """Seconds until the oldest "up" of `surface` leaves the window."""
        with self.lock:
            now = self.clock()
            for t, s, up in self._events:
                if up and (not surface or s == surface):
                    return max(0.0, t + self.window_s - now)
        return 0.0


class SpendLedger:
    """USD spent in the last `window_s`, per caller key and per user tier."""

    def __init__(self, window_s: float, clock: Clock = time.monotonic, max_keys: int = 100_000) -> None:
        self.window_s, self.clock, self.max_keys = window_s, clock, max_keys
        self._spends: OrderedDict[str, deque[tuple[float, float]]] = OrderedDict()
        self._sums: dict[str, float] = {}
        self.lock = threading.Lock()

    def _evict(self, key: str, now: float) -> None:
        q = self._spends.get(key)
        while q and q[0][0] <= now - self.window_s:
            self._sums[key] -= q.popleft()[1]
        if q is not None and not q:
            del self._spends[key]
            self._sums.pop(key, None)

    def add(self, key: str, usd: float) -> None:
        if usd <= 0:
            return
        with self.lock:
            now = self.clock()
            self._evict(key, now)
            self._spends.setdefault(key, deque()).append((now, usd))
            self._spends.move_to_end(key)
            self._sums[key] = self._sums.get(key, 0.0) + usd
            while len(self._spends) > self.max_keys:  # forget the least recently charged
                old, _ = self._spends.popitem(last=False)
                self._sums.pop(old, None)

    def add_each(self, keys: tuple[str, ...], usd: float) -> None:
        for key in keys:
            self.add(key, usd)

    def spent(self, key: str) -> float:
        with self.lock:
            self._evict(key, self.clock())
            return max(0.0, self._sums.get(key, 0.0))

    def retry_after(self, key: str) -> float:
        with self.lock:
            q = self._spends.get(key)
            return max(0.0, q[0][0] + self.window_s - self.clock()) if q else 0.0

    def usage(self, keys: Sequence[str], caps: Sequence[float] | None = None) -> list[tuple[float, float]]:
        """(spent, seconds until its oldest spend leaves the window) of each key (`caps`: as the
        shared ledger's; all is local here)."""
        return [(self.spent(k), self.retry_after(k)) for k in keys]

    def usage_read(self, keys: Sequence[str], caps: Sequence[float] | None = None) -> Read[list[tuple[float, float]]]:
        return Read.known(self.usage(keys, caps))


def caller_key(metadata: dict[str, object]) -> str:
    """Who pays: metadata `key` (an API key id), else `user`; "" when neither is given."""
    return str(metadata.get("key") or metadata.get("user") or "")


def key_label(key: str) -> str:
    """A caller key as it may appear in a log or an alert: a short hash, never the key itself."""
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:12] if key else ""
