"""Session stickiness: a conversation stays on the route it started on (its provider's prompt
cache stays warm) until its TTL runs out, a floor or cap moves it, or its targets fail."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from llmrouter.state.link import Read


class SessionRoutes:
    """session id -> route, each entry living `ttl_s` after its last use; at most `max_sessions`."""

    def __init__(self, ttl_s: float, max_sessions: int = 100_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self.max_sessions, self.clock = ttl_s, max_sessions, clock
        self._routes: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self.lock = threading.Lock()

    def get_read(self, session: str) -> Read[str | None]:
        return Read.known(self.get(session))

    def get(self, session: str) -> str | None:
        with self.lock:
            hit = self._routes.get(session)
            if hit is None:
                return None
            if hit[1] <= self.clock():
                del self._routes[session]
                return None
            return hit[0]

    def set(self, session: str, route: str) -> None:
        with self.lock:
            self._routes[session] = (route, self.clock() + self.ttl_s)
            self._routes.move_to_end(session)
            while len(self._routes) > self.max_sessions:
                self._routes.popitem(last=False)

    def forget(self, session: str) -> None:
        with self.lock:
            self._routes.pop(session, None)

    def __len__(self) -> int:
        return len(self._routes)
