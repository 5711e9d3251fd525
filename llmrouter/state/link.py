"""The connection to Redis, and a circuit around it: a call that fails (or takes longer than
`timeout_ms`) marks Redis down with one warning; until a probe every `probe_s` finds it back,
every call returns its local default at once; on the way back the rejoin hooks run (pending
counters are flushed) and one info line says so.

Why the synchronous client: the policy, the key meter and the breakers are synchronous and run on
the event loop inside a request; a loopback call costs ~0.1 ms, and the socket timeout bounds the
worst case, after which the process stops asking until the next probe. An asyncio client would
make every one of those call sites async for no gain in latency.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from llmrouter import log as logmod
from llmrouter.config.state import StateSettings
from llmrouter.errors import ConfigError

log = logmod.get_logger("llmrouter.state")
T = TypeVar("T")


def open_client(settings: StateSettings) -> Any:
    """A redis-py client with short timeouts and no retries of its own (the Link decides)."""
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError:
        raise ConfigError("[state] url needs the redis client: pip install 'llmrouter[redis]'",
                          hint="or remove [state] to keep state in each process") from None
    timeout = settings.timeout_ms / 1000
    return redis.Redis.from_url(settings.resolved_url(), socket_timeout=timeout, socket_connect_timeout=timeout,
                                retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=0,
                                decode_responses=True, client_name=f"llmrouter-{os.getpid()}")


def redis_errors() -> tuple[type[BaseException], ...]:
    import redis

    return (redis.RedisError, OSError)


class Link:
    """Calls to Redis that never raise: `call(op, default)` is op(client), or `default` while Redis is down."""

    def __init__(self, settings: StateSettings, client: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings, self.clock = settings, clock
        self.client = client if client is not None else open_client(settings)
        self.errors = redis_errors()
        self.up = True
        self.outages = 0
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self.on_rejoin: list[Callable[[Any], None]] = []

    def call(self, op: Callable[[Any], T], default: T) -> T:
        if not self.up and not self._rejoin():
            return default
        try:
            return op(self.client)
        except self.errors as exc:
            self._down(exc)
            return default

    def check(self) -> bool:
        """Whether Redis answers now (a PING; a failure marks it down)."""
        return self.call(lambda r: bool(r.ping()), False)

    def _down(self, exc: BaseException) -> None:
        with self._lock:
            was_up, self.up = self.up, False
            self._retry_at = self.clock() + self.settings.probe_s
        if was_up:
            self.outages += 1
            log.warning("shared state unreachable: this process uses its local state until it is back",
                        url=self.settings.safe_url(), error=type(exc).__name__, retry_every_s=self.settings.probe_s)

    def _rejoin(self) -> bool:
        with self._lock:  # one probe at a time; the others stay local meanwhile
            if self.up:
                return True
            if self.clock() < self._retry_at:
                return False
            self._retry_at = self.clock() + self.settings.probe_s
        try:
            self.client.ping()
            for hook in self.on_rejoin:
                hook(self.client)
        except self.errors:
            return False
        self.up = True
        log.info("shared state back: rejoined", url=self.settings.safe_url())
        return True

    def close(self) -> None:
        try:
            self.client.close()
        except self.errors:
            pass
