"""Running totals shared through Redis (INCRBY): what each API key has spent, in micro-USD.

Checked against a limit, a total read (or brought back by a charge) within read_ttl_s answers
here, with this process's own charges since added, while far below it (state/headroom.py);
otherwise it is read. While Redis is down, charges pile up locally (the last total read plus
them is what this process believes) and are added to Redis when it is back, so no spend is lost
to an outage."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from llmrouter.state.headroom import Headroom
from llmrouter.state.link import DOWN, Link, Read, Write


class SharedTotal:
    def __init__(self, link: Link, prefix: str, read_ttl_s: float, clock: Callable[[], float] = time.monotonic,
                 local_below: float = 0.0) -> None:
        self.link, self.prefix, self.clock = link, prefix, clock
        self.known = Headroom(read_ttl_s, local_below)  # name -> total read, and charges unanswered
        self._pending: dict[str, int] = {}  # added while Redis was down
        self._lock = threading.Lock()
        link.on_rejoin.append(self._flush)

    def get(self, name: str, limit: int | None = None) -> int:
        return self.link.read(self.get_read(name, limit))

    def get_read(self, name: str, limit: int | None = None) -> Read[int]:
        """`get` as a Read, to go with others in one round trip (none while the total is far
        below `limit`)."""
        now = self.clock()
        here = self.known.estimate(name, now)
        if limit is not None and here is not None and self.known.room(here, limit):
            return Read.known(int(here[0]))

        def finish(value: Any) -> int:
            if value is DOWN:  # the last total read plus what was added since
                return int(self.known.last(name) or 0) + self._pending.get(name, 0)
            total = int(value or 0)
            self.known.saw(name, total, now)
            return total
        return Read(lambda r: r.get(f"{self.prefix}:{name}"), finish)

    def add(self, name: str, amount: int) -> None:
        """INCRBY (with the link's open batch, if any); kept pending while Redis is down."""
        sent_at, amounts = self.clock(), {name: amount}
        self.known.sent(amounts)

        def known(total: Any) -> None:
            self.known.came_back(amounts, sent_at, {name: (int(total), -1)})

        def pending() -> None:
            self.known.came_back(amounts, sent_at)
            with self._lock:
                self._pending[name] = self._pending.get(name, 0) + amount

        self.link.later(Write(lambda r: r.incrby(f"{self.prefix}:{name}", amount), done=known, failed=pending))

    def _flush(self, client: Any) -> None:
        """Redis is back: add what was charged meanwhile (each name once, even if a later one fails)."""
        with self._lock:
            for name in list(self._pending):
                client.incrby(f"{self.prefix}:{name}", self._pending[name])
                del self._pending[name]
                self.known.forget(name)


class SharedSpend:
    """What each key has spent (as server/auth.py Spend), shared by every process."""

    def __init__(self, total: SharedTotal) -> None:
        self.total = total

    def spent_usd(self, key_id: str) -> float:
        return self.total.link.read(self.spent_read(key_id))

    def spent_read(self, key_id: str, budget_usd: float | None = None) -> Read[float]:
        """What `key_id` spent; without a round trip while far below `budget_usd`."""
        limit = int(budget_usd * 1e6) if budget_usd else None
        return self.total.get_read(key_id, limit).then(lambda micro: micro / 1e6)

    def charge(self, key_id: str, usd: float) -> None:
        if usd > 0:
            self.total.add(key_id, int(round(usd * 1e6)))
