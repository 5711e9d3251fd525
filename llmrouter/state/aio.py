"""The server's one waited round trip, through redis-py's asyncio client: while a request waits
for Redis, the event loop serves the others.

A served request waits for Redis once, before the model (the key meter's checks with the
policy's read: server/app.py `AppState.admit`); its writes go unwaited (state/sender.py). The
policy, the meter and the breakers stay synchronous library code: `Router.decide` and the CLI use
them without an event loop, through the same Reads; only how those reads travel differs here. The
same circuit applies: while Redis is down the reads take their local values at once.

An asyncio client belongs to the event loop it first connected on, so there is one per loop.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

from llmrouter.state.link import Link, Read, read_all


class LoopClients:
    """The asyncio client of each running event loop, for one link's URL and timeouts."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    def client(self) -> Any:
        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            self._clients[loop] = _open(self.link)
        return self._clients[loop]

    async def aclose(self) -> None:
        """Close this loop's client (the server's lifespan ends)."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()


_LINKS: weakref.WeakKeyDictionary[Link, LoopClients] = weakref.WeakKeyDictionary()


def clients_of(link: Link) -> LoopClients:
    if link not in _LINKS:
        _LINKS[link] = LoopClients(link)
    return _LINKS[link]


async def aread_all(link: Link | None, reads: list[Read[Any]]) -> list[Any]:
    """`read_all` on the asyncio client: the values of `reads`, in one round trip for those that
    need Redis, without blocking the event loop while it lasts."""
    needed = [op for r in reads for op in r.commands()]
    if link is None or not needed:
        return read_all(link, reads)
    answers = await _pipelined(link, needed) if link.ready() else None
    pending = iter(answers) if answers is not None else None
    return [r.value(pending) for r in reads]


async def _pipelined(link: Link, ops: list[Callable[[Any], Any]]) -> list[Any] | None:
    """Each op's one command in one asyncio pipeline; None (and Redis marked down) when it failed."""
    from redis.exceptions import NoScriptError

    try:
        pipe = clients_of(link).client().pipeline(transaction=False)
        for op in ops:
            op(pipe)
        answers = list(await pipe.execute(raise_on_error=False))
    except link.errors as exc:
        link.mark_down(exc)
        return None
    for i, answer in enumerate(answers):
        if isinstance(answer, NoScriptError):  # a script Redis forgot (a restart): alone, it loads itself
            answers[i] = link.call(ops[i], None)
        elif isinstance(answer, Exception):
            link.mark_down(answer)
            return None
    return answers


def _open(link: Link) -> Any:
    import redis.asyncio as aredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    settings, timeout = link.settings, link.settings.timeout_ms / 1000
    return aredis.Redis.from_url(settings.resolved_url(), socket_timeout=timeout, socket_connect_timeout=timeout,
                                 retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=0,
                                 decode_responses=True)
