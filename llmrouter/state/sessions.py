"""Session stickiness shared through Redis (SET PX / GET / DEL), with the interface of
policy/sessions.py SessionRoutes. Local entries answer for read_ttl_s after they were read or
written, and alone while Redis is down."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from llmrouter.state.link import DOWN, Link, Read, Write
from llmrouter.state.windows import hashed

Clock = Callable[[], float]


class SharedSessions:
    def __init__(self, link: Link, prefix: str, ttl_s: float, read_ttl_s: float, max_sessions: int = 100_000,
                 clock: Clock = time.monotonic) -> None:
        self.link, self.prefix, self.ttl_s, self.read_ttl_s = link, prefix, ttl_s, read_ttl_s
        self.max_sessions, self.clock = max_sessions, clock
        self._local: OrderedDict[str, tuple[str, float, float]] = OrderedDict()  # route, expires, seen at
        self._written: OrderedDict[str, float] = OrderedDict()  # when this process last wrote it to Redis
        self.lock = threading.Lock()

    def _key(self, session: str) -> str:
        return f"{self.prefix}:{hashed(session)}"

    def _keep(self, session: str, route: str) -> None:
        now = self.clock()
        with self.lock:
            self._local[session] = (route, now + self.ttl_s, now)
            self._local.move_to_end(session)
            while len(self._local) > self.max_sessions:
                self._local.popitem(last=False)

    def _local_get(self, session: str, fresh_only: bool) -> str | None:
        with self.lock:
            hit = self._local.get(session)
        now = self.clock()
        if hit is None or hit[1] <= now or (fresh_only and now - hit[2] >= self.read_ttl_s):
            return None
        return hit[0]

    def get(self, session: str) -> str | None:
        return self.link.read(self.get_read(session))

    def get_read(self, session: str) -> Read[str | None]:
        """`get` as a Read, to go with others in one round trip."""
        route = self._local_get(session, fresh_only=True)
        if route is not None:
            return Read.known(route)

        def finish(shared: Any) -> str | None:
            if shared is DOWN:
                return self._local_get(session, fresh_only=False)
            if shared is None:
                self.forget_local(session)
                return None
            self._keep(session, str(shared))
            return str(shared)
        return Read(lambda r: r.get(self._key(session)), finish)

    def set(self, session: str, route: str) -> None:
        """Keep `session` on `route`: written to Redis unless this process wrote that same route
        there lately (a tenth of the TTL: the TTL is refreshed no later than that)."""
        with self.lock:
            hit = self._local.get(session)
            written = self._written.get(session)
        self._keep(session, route)
        if hit is not None and hit[0] == route and written is not None and self.clock() - written < self.ttl_s / 10:
            return
        self.link.later(Write(lambda r: r.set(self._key(session), route, px=int(self.ttl_s * 1000)),
                              done=lambda _: self._wrote(session)))

    def _wrote(self, session: str) -> None:
        with self.lock:
            self._written[session] = self.clock()
            self._written.move_to_end(session)
            while len(self._written) > self.max_sessions:
                self._written.popitem(last=False)

    def forget_local(self, session: str) -> None:
        with self.lock:
            self._local.pop(session, None)
            self._written.pop(session, None)

    def forget(self, session: str) -> None:
        self.forget_local(session)
        self.link.later(Write(lambda r: r.delete(self._key(session))))

    def __len__(self) -> int:
        return len(self._local)
