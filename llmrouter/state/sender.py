"""Writes sent without waiting for their answers: a batch of writes goes out in one send on a
connection of its own, and a thread reads the answers and hands each to its write's `done` (or
runs its `failed`). A send wakes no thread: the reader comes by every READ_EVERY_S (and sleeps
until the next send after a second with nothing sent), so parsing answers never lands in the
middle of a request, where it would take the GIL from it; under load it parses them in bursts.

Why it is safe not to wait: a send returns once the commands are in Redis's socket, and Redis
serves its sockets in the order they became readable. A read this process (or any other) makes
after the send, such as the next request's cap check or a session's next turn, reaches Redis
after the write, so it sees it. What waiting would add is only the answer, and the writes that
use their answer (a window's new sums, a total) use it to refresh a local copy.

Why it matters: on an idle VM each answer has to wake a halted vCPU (~0.5 ms a round trip,
bench/results/scale_out.md). A served request's writes (the escalation window and the session
after the model, the charges after the answer) now cost it no round trip.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MARK = "llmrouter_fire_and_forget"  # set on the sender's connection (tests tell its sends apart)
# how often the reader comes by for answers: a send wakes no thread, so no answer is parsed in
# the middle of a request on a CPU that was idle (bench/results/scale_out.md)
READ_EVERY_S = 0.02
SLEEP_AFTER_S = 1.0  # with nothing sent for this long it sleeps until a send (or flush) wakes it


@dataclass
class Write:
    """One command for Redis (`op` queues exactly one), what to do with its answer, and what to do
    when Redis could not take it."""

    op: Callable[[Any], Any]
    done: Callable[[Any], None] | None = None
    failed: Callable[[], None] | None = None


@dataclass
class Sent:
    """Writes on the wire whose answers are not read yet, with the commands they queued."""

    connection: Any
    writes: list[Write]
    commands: list[tuple[tuple[Any, ...], dict[str, Any]]]


class Sender:
    """One connection for fire-and-forget writes and the thread that reads their answers.
    `errors`: what a failed call raises; `on_error` hears a failed send or read (the link marks
    Redis down); `rerun(op)` runs a write alone (None when it could not)."""

    def __init__(self, client: Any, errors: tuple[type[BaseException], ...],
                 on_error: Callable[[BaseException], None], rerun: Callable[[Callable[[Any], Any]], Any]) -> None:
        self.client, self.errors, self.on_error, self.rerun = client, errors, on_error, rerun
        self._connection: Any = None
        self._waiting: deque[Sent] = deque()
        self._changed = threading.Condition()
        self._reader: threading.Thread | None = None
        self._closed = False
        self._asleep = False  # the reader waits for a send to wake it
        self._pid = os.getpid()

    def send(self, writes: list[Write]) -> None:
        """Put `writes` on the wire in one send (their answers come later); on failure each one's
        `failed` runs now."""
        pipe = self.client.pipeline(transaction=False)
        for write in writes:
            write.op(pipe)
        commands = list(pipe.command_stack)
        with self._changed:
            try:
                connection = self._connect()
                connection.send_packed_command(connection.pack_commands([args for args, _ in commands]))
            except self.errors as exc:
                self._drop(self._connection)
                failed = exc
            else:  # no thread is woken (the reader comes by within READ_EVERY_S), unless it went to sleep
                self._waiting.append(Sent(connection, writes, commands))
                if self._asleep:
                    self._asleep = False
                    self._changed.notify()
                return
        _fail(writes)
        self.on_error(failed)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Whether every answer sent for was read within `timeout_s` (for tests and shutdown)."""
        with self._changed:
            self._changed.notify_all()  # the reader comes now
            return self._changed.wait_for(lambda: not self._waiting, timeout_s)

    def close(self) -> None:
        self.flush(1.0)
        with self._changed:
            self._closed = True
            self._drop(self._connection)
            self._changed.notify_all()

    def _connect(self) -> Any:
        """The sender's connection, opened (and its reader started) on first use, and again in a
        forked child (the parent's socket and thread are not its own)."""
        if self._pid != os.getpid():
            self._pid, self._connection, self._reader = os.getpid(), None, None
            self._waiting.clear()
        if self._connection is None:
            connection = self.client.connection_pool.make_connection()
            setattr(connection, MARK, True)
            connection.connect()
            self._connection = connection
        if self._reader is None or not self._reader.is_alive():
            self._reader = threading.Thread(target=self._read_answers, name="llmrouter-state-answers", daemon=True)
            self._reader.start()
        return self._connection

    def _read_answers(self) -> None:
        while True:
            with self._changed:
                idle_since = time.monotonic()
                while not self._waiting and not self._closed:  # sends do not wake it: it comes by
                    self._asleep = time.monotonic() - idle_since > SLEEP_AFTER_S  # a send wakes it then
                    self._changed.wait(None if self._asleep else READ_EVERY_S)
                if not self._waiting:
                    return
                sent = self._waiting[0]
            answers = self._answers(sent)
            if answers is not None:
                self._deliver(sent.writes, answers)
            with self._changed:  # handed on: only now does `flush` count it done
                if self._waiting and self._waiting[0] is sent:
                    self._waiting.popleft()
                self._changed.notify_all()

    def _answers(self, sent: Sent) -> list[Any] | None:
        """The answers to `sent` (an error answer as its exception); None when the connection
        failed: then every write waiting on it fails."""
        from redis.exceptions import ResponseError

        answers: list[Any] = []
        try:
            for args, options in sent.commands:
                try:
                    answers.append(self.client.parse_response(sent.connection, args[0], **options))
                except ResponseError as exc:
                    answers.append(exc)
        except self.errors as exc:
            with self._changed:
                lost = [s for s in self._waiting if s.connection is sent.connection]
                for s in lost[1:]:
                    self._waiting.remove(s)
                self._drop(sent.connection)
            for s in lost:
                _fail(s.writes)
            self.on_error(exc)
            return None
        return answers

    def _deliver(self, writes: list[Write], answers: list[Any]) -> None:
        from redis.exceptions import NoScriptError

        for write, answer in zip(writes, answers):
            if isinstance(answer, NoScriptError):  # a script Redis forgot (a restart): alone, it loads itself
                answer = self.rerun(write.op)
                if answer is None:
                    _fail([write])
                    continue
            elif isinstance(answer, Exception):
                _fail([write])
                self.on_error(answer)
                continue
            if write.done is not None:
                write.done(answer)

    def reconnect(self) -> None:
        """Open a new connection for the next send (Redis is back: the old one may be stale),
        unless answers are still awaited on it."""
        with self._changed:
            if not self._waiting:
                self._drop(self._connection)

    def _drop(self, connection: Any) -> None:
        """Close `connection`; the next send opens a new one. Call with the lock held."""
        if connection is not None:
            connection.disconnect()
        if connection is self._connection:
            self._connection = None


def _fail(writes: list[Write]) -> None:
    for write in writes:
        if write.failed is not None:
            write.failed()
