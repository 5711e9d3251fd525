"""Running totals shared through Redis (INCRBY): what each API key has spent, in micro-USD.

A read younger than read_ttl_s is reused, with this process's own charges since added. While
Redis is down, charges pile up locally (the last total read plus them is what this process
believes) and are added to Redis when it is back, so no spend is lost to an outage."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from llmrouter.state.link import DOWN, Link, Read, Write


class SharedTotal:
    def __init__(self, link: Link, prefix: str, read_ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.link, self.prefix, self.read_ttl_s, self.clock = link, prefix, read_ttl_s, clock
        self._known: dict[str, tuple[int, float]] = {}  # name -> (total, read at)
        self._pending: dict[str, int] = {}  # added while Redis was down
        self._lock = threading.Lock()
        link.on_rejoin.append(self._flush)

    def get(self, name: str) -> int:
        return self.link.read(self.get_read(name))

    def get_read(self, name: str) -> Read[int]:
        """`get` as a Read, to go with others in one round trip."""
        known = self._known.get(name)
        if known is not None and self.clock() - known[1] < self.read_ttl_s:
            return Read.known(known[0])

        def finish(value: Any) -> int:
            if value is DOWN:  # the last total read plus what was added since
                return (known[0] if known else 0) + self._pending.get(name, 0)
            total = int(value or 0)
            self._known[name] = (total, self.clock())
            return total
        return Read(lambda r: r.get(f"{self.prefix}:{name}"), finish)

    def add(self, name: str, amount: int) -> None:
        """INCRBY (with the link's open batch, if any); kept pending while Redis is down."""
        def known(total: Any) -> None:
            self._known[name] = (int(total), self.clock())

        def pending() -> None:
            with self._lock:
                self._pending[name] = self._pending.get(name, 0) + amount

        self.link.later(Write(lambda r: r.incrby(f"{self.prefix}:{name}", amount), done=known, failed=pending))

    def _flush(self, client: Any) -> None:
        """Redis is back: add what was charged meanwhile (each name once, even if a later one fails)."""
        with self._lock:
            for name in list(self._pending):
                client.incrby(f"{self.prefix}:{name}", self._pending[name])
                del self._pending[name]
                self._known.pop(name, None)


class SharedSpend:
    """What each key has spent (as server/auth.py Spend), shared by every process."""

    def __init__(self, total: SharedTotal) -> None:
        self.total = total

    def spent_usd(self, key_id: str) -> float:
        return self.total.link.read(self.spent_read(key_id))

    def spent_read(self, key_id: str) -> Read[float]:
        return self.total.get_read(key_id).then(lambda micro: micro / 1e6)

    def charge(self, key_id: str, usd: float) -> None:
        if usd > 0:
            self.total.add(key_id, int(round(usd * 1e6)))
