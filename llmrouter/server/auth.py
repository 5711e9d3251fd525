"""API keys for the server: who is calling, and what they may do.

A key looks like `llmr-<id>-<secret>`. The key file (JSON, written by `llmrouter keys`) holds per
key only its id, a random salt and sha256(salt + secret) — never the secret — plus what the key
carries: its tenant, tier, request rate, the routes and targets it may use, and whether it may
pin a route, call a target directly (bypass routing), or act as a trusted gateway (whose
`x-llmrouter-*` headers are believed). A key's role says what it may do: `full` (the default) calls
completions and reads the server's numbers (/metrics, /v1/stats: every tenant's), `read` only reads
them (and /v1/models), `call` only calls (a customer's key: it sees no other tenant's numbers). Secrets are 32 random bytes, so one salted hash is as
strong as a slow one; comparison is constant-time, and an unknown id costs the same as a wrong
secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field, ValidationError

from llmrouter.errors import ConfigError
from llmrouter.state.link import Link, Read, batch_on, read_all

if TYPE_CHECKING:
    from llmrouter.state import SharedState
    from llmrouter.state.limits import SharedRequestRate
    from llmrouter.state.totals import SharedSpend

PREFIX = "llmr"
_DUMMY_SALT = secrets.token_hex(16)


class KeyRecord(BaseModel):
    """One key as stored: no secret, only its salted hash."""

    id: str
    salt: str
    hash: str
    tenant: str = Field(min_length=1)
    role: Literal["full", "read", "call"] = "full"  # read: stats and metrics only; call: completions only
    tier: str = ""
    rpm: int = Field(0, ge=0)  # requests per minute (0: no limit)
    tpm: int = Field(0, ge=0)  # prompt + completion tokens per minute (0: no limit)
    budget_usd: float = Field(0.0, ge=0)  # total spend allowed (0: no limit)
    routes: list[str] = Field(default_factory=list)  # routes it may be routed to (empty: all)
    targets: list[str] = Field(default_factory=list)  # targets it may call directly (empty: all, if it may bypass)
    may_pin: bool = False
    may_bypass: bool = False
    trusted_gateway: bool = False
    revoked: bool = False
    created: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.tenant}/{self.id}"


def _digest(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


class KeyStore:
    """The key file: read, changed and written back atomically; `verify` checks a presented key."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(os.path.expanduser(str(path)))
        self._lock = threading.Lock()
        self._stamp = self._mtime()
        self.keys: dict[str, KeyRecord] = self._read()

    def _mtime(self) -> int:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return 0

    def _refresh(self) -> None:
        """Read the file again when another process (`llmrouter keys`) changed it."""
        stamp = self._mtime()
        if stamp != self._stamp:
            with self._lock:
                try:
                    self.keys, self._stamp = self._read(), stamp
                except ConfigError:
                    pass  # half-written or damaged: keep the keys known so far

    def _read(self) -> dict[str, KeyRecord]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text("utf-8"))
            return {k["id"]: KeyRecord(**k) for k in data.get("keys", [])}
        except (OSError, ValueError, TypeError, KeyError, ValidationError) as exc:
            raise ConfigError(f"{self.path} is not a key file: {exc}",
                              hint="create keys with `llmrouter keys create --file PATH`") from None

    def _write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        body = {"version": 1, "keys": [k.model_dump() for k in self.keys.values()]}
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # hashes only, but still private
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(body, f, indent=1)
        os.replace(tmp, self.path)
        self._stamp = self._mtime()

    def create(self, tenant: str, **grants: object) -> tuple[str, KeyRecord]:
        """A new key: the secret string (shown once) and its stored record."""
        key_id, secret, salt = secrets.token_hex(6), secrets.token_urlsafe(32), secrets.token_hex(16)
        record = KeyRecord(id=key_id, salt=salt, hash=_digest(salt, secret), tenant=tenant,
                           created=time.time(), **grants)
        with self._lock:
            self.keys[key_id] = record
            self._write()
        return f"{PREFIX}-{key_id}-{secret}", record

    def revoke(self, key_id: str) -> bool:
        with self._lock:
            record = self.keys.get(key_id)
            if record is None:
                return False
            self.keys[key_id] = record.model_copy(update={"revoked": True})
            self._write()
            return True

    def verify(self, presented: str) -> KeyRecord | None:
        """The record of a valid, unrevoked key, else None (same work for every wrong key)."""
        self._refresh()
        parts = presented.split("-", 2)
        ok_shape = len(parts) == 3 and parts[0] == PREFIX
        record = self.keys.get(parts[1]) if ok_shape else None
        salt, want = (record.salt, record.hash) if record is not None else (_DUMMY_SALT, "0" * 64)
        got = _digest(salt, parts[2] if ok_shape else presented)
        if hmac.compare_digest(got, want) and record is not None and not record.revoked:
            return record
        return None


class RequestRate:
    """Requests (or tokens) per key in the last minute, a sliding window; `admit` says when to retry."""

    def __init__(self, window_s: float = 60.0, clock: object = time.monotonic) -> None:
        self.window_s, self.clock = window_s, clock
        self._seen: dict[str, deque[tuple[float, int]]] = {}
        self._sums: dict[str, int] = {}
        self._lock = threading.Lock()

    def _evict(self, key_id: str, now: float) -> deque[tuple[float, int]]:
        seen = self._seen.setdefault(key_id, deque())
        while seen and seen[0][0] <= now - self.window_s:
            self._sums[key_id] -= seen.popleft()[1]
        return seen

    def admit(self, key_id: str, per_window: int, weight: int = 1) -> float | None:
        """None when `weight` more fits `per_window` (and it is counted), else the seconds until
        it would. A weight of 0 only asks whether the window is already full."""
        if per_window <= 0:
            return None
        with self._lock:
            now = self.clock()  # type: ignore[operator]
            seen = self._evict(key_id, now)
            used = self._sums.get(key_id, 0)
            if used >= per_window or (weight and used + weight > per_window and seen):
                return max(0.001, seen[0][0] + self.window_s - now) if seen else self.window_s
            if weight:
                seen.append((now, weight))
                self._sums[key_id] = used + weight
            return None

    def add(self, key_id: str, weight: int) -> None:
        """Count `weight` now, whatever the window holds (tokens known only after the answer)."""
        with self._lock:
            now = self.clock()  # type: ignore[operator]
            self._evict(key_id, now).append((now, weight))
            self._sums[key_id] = self._sums.get(key_id, 0) + weight


class Spend:
    """What each key has spent, in micro-USD, in a diskcache beside the key file: atomic across
    the processes of one host, and kept across restarts."""

    def __init__(self, keys_path: Path) -> None:
        import diskcache

        self.cache = diskcache.Cache(str(keys_path.with_name(keys_path.name + ".spend")), size_limit=2**26)

    def spent_usd(self, key_id: str) -> float:
        return int(self.cache.get(key_id, 0)) / 1e6

    def charge(self, key_id: str, usd: float) -> None:
        if usd > 0:
            self.cache.incr(key_id, int(round(usd * 1e6)))


# --- on the request path ----------------------------------------------------------------------
PROTECTED = ("tier", "key", "pin", "surface")  # metadata that can raise spend or quality


def bearer(headers: Mapping[str, str]) -> str:
    value = headers.get("authorization", "")
    return value[7:].strip() if value[:7].lower() == "bearer " else ""


class Meter:
    """A key's use on the request path: requests and tokens per minute, and spend; with `state`,
    counted once for every process on its Redis."""

    def __init__(self, keys: KeyStore, state: SharedState | None = None) -> None:
        self.requests: RequestRate | SharedRequestRate
        self.tokens: RequestRate | SharedRequestRate
        self.spend: Spend | SharedSpend
        self.shared: tuple[SharedState, SharedSpend, SharedRequestRate, SharedRequestRate] | None = None
        if state is None:
            self.requests, self.tokens, self.spend = RequestRate(), RequestRate(), Spend(keys.path)
        else:
            spend, tokens, requests = state.key_spend(), state.request_rate("tpm"), state.request_rate("rpm")
            self.requests, self.tokens, self.spend = requests, tokens, spend
            self.shared = (state, spend, tokens, requests)

    @property
    def link(self) -> Link | None:
        """The Redis link the key's counts go through (None: counted in this process)."""
        return self.shared[0].link if self.shared is not None else None

    def admit(self, record: KeyRecord) -> None:
        """Raise 429 when the key is past its budget, or its token or request rate; counts the request."""
        refusal = read_all(self.link, [self.admission(record)])[0]
        if refusal is not None:
            raise refusal

    def admission(self, record: KeyRecord) -> Read[Exception | None]:
        """`admit` as a Read whose value is the refusal (None: admitted and counted), to go with
        other reads in one round trip."""
        if self.shared is not None:
            return self._shared_admission(record, *self.shared[1:])
        if record.budget_usd and self.spend.spent_usd(record.id) >= record.budget_usd:
            return Read.known(_budget_spent(record))
        wait = self.tokens.admit(record.id, record.tpm, weight=0)
        if wait is not None:
            return Read.known(_too_many(f"{record.tpm} tokens", wait))
        wait = self.requests.admit(record.id, record.rpm)
        return Read.known(_too_many(f"{record.rpm} requests", wait) if wait is not None else None)

    @staticmethod
    def _shared_admission(record: KeyRecord, spend: SharedSpend, tokens: SharedRequestRate,
                          requests: SharedRequestRate) -> Read[Exception | None]:
        """The same checks read together: the request is counted with them, and given back when
        the budget or the token rate refuses it."""
        def refusal(values: list[Any]) -> Exception | None:
            spent, tokens_wait, requests_wait = values
            refused = (_budget_spent(record) if record.budget_usd and spent >= record.budget_usd else
                       _too_many(f"{record.tpm} tokens", tokens_wait) if tokens_wait is not None else None)
            if refused is not None:
                if requests_wait is None and record.rpm > 0:
                    requests.give_back(record.id, 1)
                return refused
            return _too_many(f"{record.rpm} requests", requests_wait) if requests_wait is not None else None
        return Read.all([spend.spent_read(record.id, record.budget_usd) if record.budget_usd else Read.known(0.0),
                         tokens.admit_read(record.id, record.tpm, weight=0),
                         requests.admit_read(record.id, record.rpm)]).then(refusal)

    def settle(self, record: KeyRecord, tokens: int, usd: float) -> None:
        with batch_on(self.link):  # sent together
            self.tokens.add(record.id, tokens)
            self.spend.charge(record.id, usd)


def _too_many(what: str, wait: float) -> Exception:
    from llmrouter.server.wire import HTTPError

    return HTTPError(429, f"this key's limit of {what} per minute is reached", kind="rate_limit_error",
                     code="rate_limit_exceeded", headers={"retry-after": str(max(1, math.ceil(wait)))})


def _budget_spent(record: KeyRecord) -> Exception:
    from llmrouter.server.wire import HTTPError

    return HTTPError(429, f"this key's budget of ${record.budget_usd:g} is spent", kind="insufficient_quota",
                     code="insufficient_quota")


def authenticate(keys: KeyStore, headers: Mapping[str, str]) -> KeyRecord:
    """The caller's key record; 401 when the key is missing or unknown (its limits: Meter.admit)."""
    from llmrouter.server.wire import HTTPError

    token = bearer(headers)
    record = keys.verify(token) if token else None
    if record is None:
        raise HTTPError(401, "missing or unknown API key: send `Authorization: Bearer <llmrouter key>` "
                        "(create one with `llmrouter keys create`)", code="invalid_api_key")
    return record


def may_write(record: KeyRecord | None) -> bool:
    """Whether the caller may call completions and send feedback (no key: the server has no keys)."""
    return record is None or record.role != "read"


def may_read(record: KeyRecord | None) -> bool:
    """Whether the caller may read the server's numbers: /metrics, /v1/stats, /v1/reports."""
    return record is None or record.role != "call"


def apply_grants(record: KeyRecord, metadata: dict[str, object], client_pin: str | None,
                 model: str, named: tuple[str, ...] | None) -> dict[str, object]:
    """The request's metadata as the key allows it: tier and key from the key, a pin only where
    the key may pin, and the targets a `model` names (`named`; None: the router decides) only
    where it may bypass routing to all of them (else 403)."""
    from llmrouter.server.wire import HTTPError

    def refuse(message: str) -> HTTPError:
        return HTTPError(403, message, kind="permission_error", code="not_allowed")

    if not may_write(record):
        raise refuse("this key is read-only (role read): it may read /dashboard, /v1/stats and /metrics, "
                     "not call completions")
    if named is not None:
        if not record.may_bypass or (record.targets and not set(named) <= set(record.targets)):
            raise refuse(f"this key may not call {model!r} directly: use model=\"router\"")
    meta = dict(metadata)
    if not record.trusted_gateway:
        for name in PROTECTED:
            meta.pop(name, None)
        if client_pin:
            if not record.may_pin:
                raise refuse("this key may not pin a route (x-llmrouter-pin)")
            meta["pin"] = client_pin
        meta["key"] = record.id
        if record.tier:
            meta["tier"] = record.tier
    meta["tenant"] = record.tenant
    return meta
