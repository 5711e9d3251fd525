"""Health-aware ordering: each target's recent error rate and latency as averages that decay with
time, so a failing or slowing target is tried after the healthy ones of its route well before its
breaker opens ([fallback] health_ordering = true).

A target is unhealthy when
- its error rate over roughly the last `HALF_LIFE_S` seconds (an average that decays with time)
  is `ERROR_RATE` or more, on at least `MIN_WEIGHT` attempts' worth of evidence, or
- its latency (an EWMA over its last few answers) is `SLOWDOWN` times its usual latency (a slow
  EWMA over many answers, which a slowdown only moves slowly) or more.
It is judged against itself, never against the other targets, so a frontier model that is simply
slower than its cheap fallback keeps its place. Without new attempts the evidence goes stale, the
target counts as healthy again and real traffic probes it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmrouter.types import Attempt

HALF_LIFE_S = 30.0  # recent errors; latency older than twice this is stale
MIN_WEIGHT = 2.5  # recent evidence (3 attempts in quick succession) before a target is judged
ERROR_RATE = 0.5
SLOWDOWN = 3.0
RECENT_ALPHA, USUAL_ALPHA = 0.3, 0.02  # latency EWMAs: the last few answers, and the usual
USUAL_AFTER = 10  # answers before a target's usual latency is known


@dataclass
class Decaying:
    """A time-decayed weighted sum and weight: `mean` is the recent average of what was added."""

    half_life_s: float
    total: float = 0.0
    weight: float = 0.0
    at: float = 0.0

    def decay(self, now: float) -> None:
        if self.weight:
            factor = math.pow(0.5, max(0.0, now - self.at) / self.half_life_s)
            self.total, self.weight = self.total * factor, self.weight * factor
        self.at = now

    def add(self, value: float, now: float) -> None:
        self.decay(now)
        self.total += value
        self.weight += 1.0

    @property
    def mean(self) -> float:
        return self.total / self.weight if self.weight else 0.0


class TargetHealth:
    """One target's recent errors and latency."""

    def __init__(self) -> None:
        self.errors = Decaying(HALF_LIFE_S)
        self.recent_ms = self.usual_ms = 0.0
        self.answers, self.answered_at = 0, 0.0

    def record(self, ok: bool, elapsed_ms: float, now: float) -> None:
        self.errors.add(0.0 if ok else 1.0, now)
        if not ok:
            return
        if not self.answers:
            self.recent_ms = self.usual_ms = elapsed_ms
        self.recent_ms += RECENT_ALPHA * (elapsed_ms - self.recent_ms)
        self.usual_ms += USUAL_ALPHA * (min(elapsed_ms, SLOWDOWN * self.usual_ms) - self.usual_ms)
        self.answers, self.answered_at = self.answers + 1, now

    def problem(self, now: float) -> str | None:
        """Why the target counts as unhealthy now, or None."""
        self.errors.decay(now)
        if self.errors.weight >= MIN_WEIGHT and self.errors.mean >= ERROR_RATE:
            return f"recent error rate {self.errors.mean:.0%}"
        fresh = self.answers >= USUAL_AFTER and now - self.answered_at < 2 * HALF_LIFE_S
        if fresh and self.recent_ms >= SLOWDOWN * self.usual_ms > 0:
            return f"recent latency {self.recent_ms:.0f} ms against {self.usual_ms:.0f} ms usually"
        return None


class Health:
    """The health of every target of a chain, fed by its attempts (a FallbackChain listener)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._targets: dict[str, TargetHealth] = {}

    def __call__(self, attempt: Attempt) -> None:
        if attempt.outcome not in ("ok", "failed") or attempt.status in (400, 413, 422):
            return  # skips, cancelled hedges and the request's own faults say nothing about the target
        with self._lock:
            health = self._targets.setdefault(attempt.target, TargetHealth())
            health.record(attempt.outcome == "ok", attempt.elapsed_ms, self._clock())

    def problem(self, name: str) -> str | None:
        with self._lock:
            health = self._targets.get(name)
            return health.problem(self._clock()) if health else None

    def order(self, names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
        """`names` with the unhealthy ones moved behind the healthy (each group keeps its order),
        and why each moved one moved."""
        problems = {n: p for n in names if (p := self.problem(n)) is not None}
        return [n for n in names if n not in problems] + [n for n in names if n in problems], problems
