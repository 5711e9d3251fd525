"""The connection to Redis, and a circuit around it: a call that fails (or takes longer than
`timeout_ms`) marks Redis down with one warning; until a probe finds it back, every call returns
its local default at once. The probe runs in a thread of its own every `probe_s` (no request waits
for it); on the way back it runs the rejoin hooks (scripts loaded, pending counters flushed), then
one info line says so.

Round trips are what the shared state costs a request, so it waits for as few as it can. Writes
(`later`) are never waited for: they join the batch open in this context, if any (`with
link.batch():` sends them together when it closes), and go out on the sender's connection, whose
thread reads their answers (state/sender.py says why that is safe). Reads a step needs at once go
together through `read_all`; a caller can hand its reads to another as one `Read.all`. A served
request waits for at most one round trip, and for none when its counters are far below their
limits (state/headroom.py) and its session, if it has one, was served here lately
(tests/integration/test_state_round_trips.py).

Two clients: the server's one waited read goes through redis-py's asyncio client (state/aio.py),
so that the event loop serves other requests while it lasts. Everything else is synchronous
library code (the policy, the key meter, the breakers; `Router.decide` and the CLI have no event
loop) and uses the synchronous client: its reads go through the same Reads, its writes go unwaited
through the sender. The socket timeout bounds the worst case, once an outage: then the process
stops asking until a probe finds Redis back.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from llmrouter import log as logmod
from llmrouter.config.state import StateSettings
from llmrouter.errors import ConfigError
from llmrouter.state.sender import Sender, Write

log = logmod.get_logger("llmrouter.state")
T = TypeVar("T")
U = TypeVar("U")
DOWN: Any = object()  # what a Read's `finish` gets while Redis is down


@dataclass
class Read(Generic[T]):
    """A value that may need Redis: `op` queues its one command (None: it is known here), and
    `finish` turns Redis's answer (DOWN while Redis is down) into the value. A read made of
    others (`Read.all`) has `parts` instead: its `finish` gets their values."""

    op: Callable[[Any], Any] | None
    finish: Callable[[Any], T]
    parts: tuple[Read[Any], ...] = ()

    @staticmethod
    def known(value: U) -> Read[U]:
        return Read(None, lambda _: value)

    @staticmethod
    def all(reads: list[Read[Any]]) -> Read[list[Any]]:
        """Several reads as one, whose value is the list of theirs: what one party needs, handed
        to another that reads it with its own (the server: the key meter's with the policy's)."""
        return Read(None, list, tuple(reads))

    def then(self, convert: Callable[[T], U]) -> Read[U]:
        return Read(self.op, lambda answer: convert(self.finish(answer)), self.parts)

    def commands(self) -> list[Callable[[Any], Any]]:
        """The commands this read queues, its parts' in order."""
        if self.parts:
            return [op for part in self.parts for op in part.commands()]
        return [self.op] if self.op is not None else []

    def value(self, answers: Iterator[Any] | None) -> T:
        """The value from the answers to `commands()` (None: Redis is down), consumed in order."""
        if self.parts:
            return self.finish([part.value(answers) for part in self.parts])
        if self.op is None:
            return self.finish(None)
        return self.finish(DOWN if answers is None else next(answers))


def read_all(link: Link | None, reads: list[Read[Any]]) -> list[Any]:
    """The values of `reads`, in one round trip for those that need Redis (none without a link)."""
    needed = [op for r in reads for op in r.commands()]
    answers = link.call(lambda client: _pipelined(client, needed), None) if link is not None and needed else []
    return values_of(reads, answers)


def values_of(reads: list[Read[Any]], answers: list[Any] | None) -> list[Any]:
    """The values of `reads` from the answers to their commands, in order (None: Redis is down)."""
    pending = iter(answers) if answers is not None else None
    return [r.value(pending) for r in reads]


@dataclass
class Batch:
    """Writes waiting for their batch to close. A task or thread started inside inherits it, and
    may write after it closed: such a write goes at once."""

    link: Link
    writes: list[Write] = field(default_factory=list)
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, write: Write) -> bool:
        with self.lock:
            if not self.closed:
                self.writes.append(write)
            return not self.closed

    def close(self) -> list[Write]:
        with self.lock:
            self.closed = True
            return self.writes


_open_batch: ContextVar[Batch | None] = ContextVar("llmrouter_state_batch", default=None)


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
        self.rejoins = 0  # how often Redis came back (connections from before may be stale)
        self._retry_at = 0.0
        self.probing: threading.Thread | None = None  # the probe running while Redis is down
        self._lock = threading.Lock()
        self.on_rejoin: list[Callable[[Any], None]] = [self._load_scripts, lambda _: self.sender.reconnect()]
        self._scripts: dict[str, Any] = {}  # Lua text -> its registered script
        self.sender = Sender(self.client, self.errors, self.mark_down, lambda op: self.call(op, None))

    def script(self, text: str) -> Any:
        """A Lua script, loaded into Redis now (and again on rejoining), so that its first
        EVALSHA in a pipeline finds it."""
        if text not in self._scripts:
            self._scripts[text] = self.client.register_script(text)
            self.call(lambda r: r.script_load(text), None)
        return self._scripts[text]

    def _load_scripts(self, client: Any) -> None:
        for text in self._scripts:
            client.script_load(text)

    def call(self, op: Callable[[Any], T], default: T) -> T:
        if not self.ready():
            return default
        try:
            return op(self.client)
        except self.errors as exc:
            self.mark_down(exc)
            return default

    def ready(self) -> bool:
        """Whether to call Redis now: it is up (while it is down, a probe starts when one is due)."""
        return self.up or self._rejoin()

    def read(self, one: Read[T]) -> T:
        """One value that may need Redis (several at once: read_all)."""
        return read_all(self, [one])[0]

    def later(self, write: Write) -> None:
        """Send `write` with the batch open in this context, or now when there is none."""
        batch = _open_batch.get()
        if batch is None or batch.link is not self or not batch.add(write):
            self.send([write])

    @contextmanager
    def batch(self, join: bool = True) -> Iterator[None]:
        """Writes made inside go to Redis together when it closes, or with the enclosing batch
        (`join`). `join=False` for what must count at once: a request's batch holds it back."""
        outer = _open_batch.get()
        if join and outer is not None and outer.link is self and not outer.closed:
            yield
            return
        batch = Batch(self)
        token = _open_batch.set(batch)
        try:
            yield
        finally:
            _open_batch.reset(token)
            self.send(batch.close())

    def send(self, writes: list[Write]) -> None:
        """The writes in one send, without waiting for their answers (state/sender.py): each
        one's `done` gets its answer later, or each `failed` runs (now, while Redis is down)."""
        if not writes:
            return
        if not self.ready():
            for write in writes:
                if write.failed is not None:
                    write.failed()
            return
        self.sender.send(writes)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Whether the answers to every write sent so far were read (and handed on) in time."""
        return self.sender.flush(timeout_s)

    def check(self) -> bool:
        """Whether Redis answers now (a PING; a failure marks it down)."""
        return self.call(lambda r: bool(r.ping()), False)

    def mark_down(self, exc: BaseException) -> None:
        """A call failed: Redis is down until a probe finds it back (one warning)."""
        with self._lock:
            was_up, self.up = self.up, False
            self._retry_at = self.clock() + self.settings.probe_s
        if was_up:
            self.outages += 1
            log.warning("shared state unreachable: this process uses its local state until it is back",
                        url=self.settings.safe_url(), error=type(exc).__name__, retry_every_s=self.settings.probe_s)

    def _rejoin(self) -> bool:
        """Whether Redis is back; while it is down, starts a probe when one is due."""
        with self._lock:
            if self.up:
                return True
            if self.clock() < self._retry_at or (self.probing is not None and self.probing.is_alive()):
                return False
            self._retry_at = self.clock() + self.settings.probe_s
            self.probing = threading.Thread(target=self._probe, name="llmrouter-state-probe", daemon=True)
            self.probing.start()
        return False

    def _probe(self) -> None:
        try:
            self.client.ping()
            for hook in self.on_rejoin:
                hook(self.client)
        except self.errors:
            return
        self.rejoins += 1
        self.up = True
        log.info("shared state back: rejoined", url=self.settings.safe_url())

    def close(self) -> None:
        self.sender.close()
        try:
            self.client.close()
        except self.errors:
            pass


def batch_on(link: Link | None, join: bool = True) -> AbstractContextManager[None]:
    """`link.batch(join)`, or nothing to batch without shared state."""
    return link.batch(join) if link is not None else nullcontext()


def _pipelined(client: Any, ops: list[Callable[[Any], Any]]) -> list[Any]:
    """Each op's one command, in one round trip (a lone one as itself)."""
    if len(ops) == 1:
        return [ops[0](client)]
    pipe = client.pipeline(transaction=False)
    for op in ops:
        op(pipe)
    return settled(list(pipe.execute(raise_on_error=False)), ops, lambda op: op(client))


def settled(answers: list[Any], ops: list[Callable[[Any], Any]], alone: Callable[[Callable[[Any], Any]], Any]) -> list[Any]:
    """`answers` to `ops`, each NOSCRIPT replaced by its op run `alone` (a script Redis forgot, as
    after a restart, loads itself that way); raises the first other error answer."""
    from redis.exceptions import NoScriptError

    for i, answer in enumerate(answers):
        if isinstance(answer, NoScriptError):
            answers[i] = alone(ops[i])
        elif isinstance(answer, Exception):
            raise answer
    return answers
