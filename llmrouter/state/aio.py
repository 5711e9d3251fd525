"""The server's one waited round trip, through redis-py's asyncio client: while a request waits
for Redis, the event loop serves the others.

A served request waits for Redis at most once, before the model (the key meter's checks with
the policy's read: server/app.py `AppState.admit`), and not at all when everything it reads is
known here (state/headroom.py); its writes go unwaited (state/sender.py). The
policy, the meter and the breakers stay synchronous library code: `Router.decide` and the CLI use
them without an event loop, through the same Reads; only how those reads travel differs here. The
same circuit applies: while Redis is down the reads take their local values at once.

An asyncio connection belongs to the event loop it was opened on, so each loop has its own.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any

from llmrouter.state.link import Link, Read, read_all, settled, values_of


class LoopChannel:
    """One event loop's asyncio client and its idle connections. A read takes an idle connection
    (or opens one), sends its commands in one write, reads their answers and gives it back: no
    pool lock, no health check, no retry wrapper, which cost ~0.1-0.2 ms a read on this VM
    (bench/results/scale_out.md). A connection opened before Redis was last rejoined is closed,
    not reused: it may be the old server's."""

    def __init__(self, link: Link) -> None:
        self.link, self.client = link, _open(link)
        self.idle: list[tuple[Any, int]] = []  # (connection, the link's rejoin count when it opened)

    async def run(self, commands: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> list[Any]:
        """Each command's answer (an error answer as its exception), in one round trip."""
        connection = await self._take()
        try:
            await connection.send_packed_command(connection.pack_commands([args for args, _ in commands]),
                                                 check_health=False)
            answers = [await self._answer(connection, args, options) for args, options in commands]
        except BaseException:  # a failure or a cancelled request: answers may be left unread
            await connection.disconnect()
            raise
        self.idle.append((connection, self.link.rejoins))
        return answers

    async def _take(self) -> Any:
        while self.idle:
            connection, opened_at = self.idle.pop()
            if opened_at == self.link.rejoins:
                return connection
            await connection.disconnect()
        connection = self.client.connection_pool.make_connection()
        await connection.connect()
        return connection

    async def _answer(self, connection: Any, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        from redis.exceptions import ResponseError

        try:
            return await self.client.parse_response(connection, args[0], **options)
        except ResponseError as exc:
            return exc

    async def aclose(self) -> None:
        while self.idle:
            await self.idle.pop()[0].disconnect()
        await self.client.aclose()


class LoopClients:
    """The channel of each running event loop, for one link."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self._channels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopChannel] = weakref.WeakKeyDictionary()

    def channel(self) -> LoopChannel:
        loop = asyncio.get_running_loop()
        if loop not in self._channels:
            self._channels[loop] = LoopChannel(self.link)
        return self._channels[loop]

    async def aclose(self) -> None:
        """Close this loop's connections (the server's lifespan ends)."""
        channel = self._channels.pop(asyncio.get_running_loop(), None)
        if channel is not None:
            await channel.aclose()


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
    return values_of(reads, await _pipelined(link, needed) if link.ready() else None)


async def _pipelined(link: Link, ops: list[Callable[[Any], Any]]) -> list[Any] | None:
    """Each op's one command in one asyncio pipeline; None (and Redis marked down) when it failed."""
    channel = clients_of(link).channel()
    pipe = channel.client.pipeline(transaction=False)  # only to queue the commands
    for op in ops:
        op(pipe)
    try:
        return settled(await channel.run(list(pipe.command_stack)), ops, lambda op: link.call(op, None))
    except link.errors as exc:
        link.mark_down(exc)
        return None


def _open(link: Link) -> Any:
    import redis.asyncio as aredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    settings, timeout = link.settings, link.settings.timeout_ms / 1000
    return aredis.Redis.from_url(settings.resolved_url(), socket_timeout=timeout, socket_connect_timeout=timeout,
                                 retry=Retry(NoBackoff(), 0), retry_on_timeout=False, health_check_interval=0,
                                 decode_responses=True)
