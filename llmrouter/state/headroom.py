"""When a counter read from Redis a moment ago may answer a check against its limit here.

Spend budgets, spend caps and request and token rates are checked on every request; asking Redis
each time costs the request a round trip, which on a VM whose vCPUs halt between requests is most
of a millisecond (bench/results/scale_out.md). Far from its limit, the answer cannot change
before the next read: a counter read within `read_ttl_s`, plus what this process added since
(sent, its answer not back yet), answers here while that estimate is below `local_below` of the
limit. From there on every check asks Redis (a rate is admitted and counted atomically in Lua), so
near a limit it holds as tightly as if every check asked: a spend cap is overshot only by the
requests in flight when it is reached. What local answers give up: the other processes' adds of
the last `read_ttl_s`, which would have to be more than (1 - local_below) of the limit to carry
it past from below the share.

Every add's answer brings the counter's new value back (unwaited, state/sender.py), so under load
the estimate stays fresh without a read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass
class Headroom:
    """Values read per name (value, oldest bucket for a window's sum, read at; the `max_names`
    last used), this process's unanswered adds per name, and the rule for answering from them."""

    read_ttl_s: float
    local_below: float
    max_names: int = 100_000  # callers named by a client (metadata `user`) must not grow it without end
    read: OrderedDict[str, tuple[float, int, float]] = field(default_factory=OrderedDict)
    unanswered: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def saw(self, name: str, value: float, at: float, oldest: int = -1) -> None:
        """Redis said `name` was `value` at `at` (an older answer than the one kept is dropped)."""
        with self.lock:
            kept = self.read.get(name)
            if kept is None or kept[2] <= at:
                self.read[name] = (value, oldest, at)
                self.read.move_to_end(name)
                while len(self.read) > self.max_names:
                    self.read.popitem(last=False)

    def sent(self, amounts: Mapping[str, float]) -> None:
        """Adds of `amounts` per name are on their way."""
        for name, amount in amounts.items():
            self.sending(name, amount)

    def came_back(self, amounts: Mapping[str, float], at: float,
                  values: Mapping[str, tuple[float, int]] | None = None) -> None:
        """The adds `sent` were answered, with each name's new (value, oldest bucket), read as of
        `at`; or, without `values`, failed."""
        for name, amount in amounts.items():
            if values is not None:
                self.saw(name, values[name][0], at, values[name][1])
            self.answered(name, amount)

    def last(self, name: str) -> float | None:
        """The last value read, however old."""
        with self.lock:
            kept = self.read.get(name)
            return kept[0] if kept is not None else None

    def forget(self, name: str) -> None:
        with self.lock:
            self.read.pop(name, None)

    def sending(self, name: str, amount: float) -> None:
        """An add of `amount` is on its way (only increases count: a give-back may lag)."""
        if amount > 0:
            with self.lock:
                self.unanswered[name] = self.unanswered.get(name, 0.0) + amount

    def answered(self, name: str, amount: float) -> None:
        """That add was answered (its value came back) or failed."""
        if amount > 0:
            with self.lock:
                left = self.unanswered.get(name, 0.0) - amount
                if left > 1e-9:
                    self.unanswered[name] = left
                else:
                    self.unanswered.pop(name, None)

    def estimate(self, name: str, now: float) -> tuple[float, int] | None:
        """The last value read plus this process's adds since, and its oldest bucket, if read
        within read_ttl_s."""
        with self.lock:
            kept = self.read.get(name)
            if kept is None or now - kept[2] >= self.read_ttl_s:
                return None
            return kept[0] + self.unanswered.get(name, 0.0), kept[1]

    def room(self, estimate: tuple[float, int] | None, limit: float) -> bool:
        """Whether `estimate` is far enough below `limit` to answer here."""
        return estimate is not None and estimate[0] < limit * self.local_below
