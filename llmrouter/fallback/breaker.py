"""A circuit breaker per target, shared by every request of a FallbackChain, and, once `share`d,
by every process on one Redis (a breaker one process opens is open in all of them)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal, Protocol


class SharedOpen(Protocol):
    """Where processes tell each other a target's breaker is open (llmrouter.state SharedFlag)."""

    def raise_for(self, seconds: float) -> None: ...
    def lower(self) -> None: ...
    def remaining(self) -> float: ...


class CircuitBreaker:
    """Closed, open or half-open for one target; thread-safe, driven by a monotonic clock."""

    def __init__(self, failures: int = 5, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.failures, self.cooldown_s, self._clock = failures, cooldown_s, clock
        self._lock = threading.Lock()
        self._streak = 0
        self._opened_at: float | None = None
        self._probing = False
        self._shared: SharedOpen | None = None

    def share(self, shared: SharedOpen) -> None:
        """Open when another process opened this target's breaker; tell them when this one opens or closes."""
        self._shared = shared

    def _adopt(self) -> None:
        """A closed breaker takes an open one from the other processes (for the rest of its cooldown)."""
        if self._shared is not None and self._opened_at is None:
            left = self._shared.remaining()
            if left > 0:
                self._opened_at = self._clock() - self.cooldown_s + min(left, self.cooldown_s)

    @property
    def state(self) -> Literal["closed", "open", "half_open"]:
        self._adopt()
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
            was_open = self._opened_at is not None
            self._streak, self._opened_at, self._probing = 0, None, False
        if was_open and self._shared is not None:
            self._shared.lower()

    def failure(self) -> None:
        with self._lock:
            self._streak += 1
            opens = self._probing or self._streak >= self.failures
            if opens:
                self._opened_at, self._probing = self._clock(), False
        if opens and self._shared is not None:
            self._shared.raise_for(self.cooldown_s)

    def release(self) -> None:
        """The request ended without a verdict on the target (client left, request error)."""
        with self._lock:
            self._probing = False
