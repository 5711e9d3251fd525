"""Alert events: caps hit, and spikes of the escalation rate or of a route's share of traffic.

An alert is a structlog `alert` event (kind = escalation_cap | spend_cap | escalation_spike |
route_share_spike) and a call to every listener (the server's metrics count them). A spike is a
share over the last `window_s` that is `spike_factor` times its baseline (the `baseline_s` before
that window) and at least `min_delta` above it, with `min_requests` decisions in each; each kind
and route alerts at most once per window.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import structlog

from llmrouter.config.policy import Alerts

log = structlog.get_logger("llmrouter")
ESCALATION = "\x00up"  # the pseudo-route under which "went above the cheapest tier" is counted


class Alerter:
    """Emits alerts, and watches route shares for spikes."""

    def __init__(self, settings: Alerts, clock: Callable[[], float] = time.monotonic) -> None:
        self.s, self.clock = settings, clock
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._recent: deque[tuple[float, str, bool]] = deque()
        self._older: deque[tuple[float, str, bool]] = deque()
        self._n_recent, self._n_older = 0, 0
        self._c_recent: Counter[str] = Counter()
        self._c_older: Counter[str] = Counter()
        self._last: dict[str, float] = {}
        self.lock = threading.Lock()

    def emit(self, kind: str, **fields: Any) -> None:
        event = {"kind": kind, **fields}
        log.warning("alert", **event)
        for listener in self.listeners:
            listener(event)

    def _move(self, now: float) -> None:
        while self._recent and self._recent[0][0] <= now - self.s.window_s:
            item = self._recent.popleft()
            self._n_recent -= 1
            self._c_recent[item[1]] -= 1
            self._c_recent[ESCALATION] -= item[2]
            self._older.append(item)
            self._n_older += 1
            self._c_older[item[1]] += 1
            self._c_older[ESCALATION] += item[2]
        while self._older and self._older[0][0] <= now - self.s.window_s - self.s.baseline_s:
            item = self._older.popleft()
            self._n_older -= 1
            self._c_older[item[1]] -= 1
            self._c_older[ESCALATION] -= item[2]

    def observe(self, route: str, up: bool, surface: str = "") -> None:
        """Count one decision and alert if its route's share, or the escalation rate, spiked."""
        spikes = []
        with self.lock:
            now = self.clock()
            self._move(now)
            self._recent.append((now, route, up))
            self._n_recent += 1
            self._c_recent[route] += 1
            self._c_recent[ESCALATION] += up
            if self._n_recent < self.s.min_requests or self._n_older < self.s.min_requests:
                return
            for key in (ESCALATION, route):
                share = self._c_recent[key] / self._n_recent
                base = self._c_older[key] / self._n_older
                if share >= self.s.spike_factor * base and share - base >= self.s.min_delta:
                    if now - self._last.get(key, -1e18) >= self.s.window_s:
                        self._last[key] = now
                        spikes.append((key, share, base))
        for key, share, base in spikes:
            kind = "escalation_spike" if key == ESCALATION else "route_share_spike"
            extra = {} if key == ESCALATION else {"route": key}
            self.emit(kind, share=round(share, 4), baseline=round(base, 4), window_s=self.s.window_s,
                      surface=surface or None, **extra)
