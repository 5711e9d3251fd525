"""The dashboard's aggregates in SQLite: per-minute buckets that survive restarts, bounded in size.

    buckets  (minute, route, target, surface, tenant, source) -> counts, cost, the cost had every
             request gone to the most expensive route (cost_top) or to the baseline route, feedback,
             and each target's failed attempts
    hists    (minute, route, kind, bin) -> n: decision and end-to-end latency (log bins, ~10%
             apart) and the router's confidence (tenths)
    recent   the last `recent` decisions (a ring); request text only when the table opts in
    alerts   the last 200 alert events

Minute buckets older than `retention_s` are rolled up into one all-time bucket (minute 0), so the
file grows with the number of label combinations, not with time. The request path only appends
to a list in memory (at most MAX_PENDING items); a thread writes it every second (WAL mode), and a
read writes it first (an in-memory store, for tests and embedders, writes every INLINE_EVERY items
instead, and has no thread). A broken or unwritable file never fails a request: the store falls
back to memory, or drops a batch, and says so in the log.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmrouter.fallback import safe_log

LOG_BIN = math.log(1.1)
ALERTS_KEPT = 200
MAX_PENDING = 100_000
INLINE_EVERY = 64
SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
  minute INTEGER, route TEXT, target TEXT, surface TEXT, tenant TEXT, source TEXT,
  requests INTEGER DEFAULT 0, answers INTEGER DEFAULT 0, errors INTEGER DEFAULT 0,
  escalations INTEGER DEFAULT 0, cap_hits INTEGER DEFAULT 0, fallbacks INTEGER DEFAULT 0,
  cost REAL DEFAULT 0, cost_top REAL DEFAULT 0, cost_base REAL DEFAULT 0,
  feedback_n INTEGER DEFAULT 0, feedback_sum REAL DEFAULT 0, failed_attempts INTEGER DEFAULT 0,
  PRIMARY KEY (minute, route, target, surface, tenant, source));
CREATE TABLE IF NOT EXISTS hists (
  minute INTEGER, route TEXT, kind TEXT, bin INTEGER, n INTEGER,
  PRIMARY KEY (minute, route, kind, bin));
CREATE TABLE IF NOT EXISTS recent (
  id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL, route TEXT, source TEXT, confidence REAL,
  target TEXT, surface TEXT, tenant TEXT, status INTEGER, decision_ms REAL, e2e_ms REAL, cost REAL,
  escalated_from TEXT, text TEXT);
CREATE TABLE IF NOT EXISTS alerts (id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL, kind TEXT, detail TEXT);
"""
COUNTS = ("requests", "answers", "errors", "escalations", "cap_hits", "fallbacks", "cost", "cost_top", "cost_base",
          "feedback_n", "feedback_sum", "failed_attempts")
KEY = ("minute", "route", "target", "surface", "tenant", "source")


@dataclass(frozen=True)
class Event:
    """One finished request (answered, or ended in an error), as the dashboard counts it."""

    ts: float
    route: str
    target: str
    surface: str
    tenant: str
    source: str  # model, cheap, rule, cache, sticky, default; "" when it failed before a decision
    status: int  # 200, or the HTTP error it ended in
    escalated_from: str = ""
    cap_hit: bool = False
    fallbacks: int = 0
    cost: float = 0.0
    cost_top: float = 0.0
    cost_base: float = 0.0
    confidence: float | None = None
    decision_ms: float | None = None
    e2e_ms: float = 0.0
    text: str | None = None  # only where [dashboard] request_text is on


def ms_bin(ms: float) -> int:
    return math.floor(math.log(max(ms, 0.01)) / LOG_BIN)


def bin_ms(b: int) -> float:
    """A latency bin's middle, in ms."""
    return math.exp((b + 0.5) * LOG_BIN)


class StatsStore:
    """Aggregates in SQLite (`path`; None: in memory only), written in batches off the request path."""

    def __init__(self, path: Path | None, retention_s: float = 30 * 86400, recent: int = 200,
                 flush_every_s: float = 1.0) -> None:
        self.retention_s, self.recent_n = retention_s, recent
        self._pending: list[tuple[str, Any]] = []
        self._lock = threading.Lock()  # the pending list
        self._db_lock = threading.Lock()  # the connection
        self.path = self._open(path)
        self._stop = threading.Event()
        self._last_rollup = 0.0
        self._thread: threading.Thread | None = None
        if self.path is not None:
            self._thread = threading.Thread(target=self._loop, args=(flush_every_s,), name="llmrouter-stats",
                                            daemon=True)
            self._thread.start()

    def _open(self, path: Path | None) -> Path | None:
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                self.db = self._connect(str(path))
                self.db.execute("PRAGMA journal_mode=WAL")
                return path
            except (OSError, sqlite3.Error) as exc:
                safe_log("warning", "stats_store_unusable", path=str(path), error=type(exc).__name__,
                         detail=str(exc)[:200], fallback="in memory")
        self.db = self._connect(":memory:")
        return None

    @staticmethod
    def _connect(where: str) -> sqlite3.Connection:
        db = sqlite3.connect(where, check_same_thread=False, timeout=5)
        db.executescript(SCHEMA)
        return db

    # --- the request path: append only --------------------------------------------------------
    def record(self, event: Event) -> None:
        self._push("event", event)

    def feedback(self, route: str, target: str, surface: str, score: float) -> None:
        self._push("feedback", (time.time(), route, target, surface, score))

    def failed_attempt(self, target: str) -> None:
        self._push("attempt", (time.time(), target))

    def alert(self, kind: str, detail: dict[str, Any]) -> None:
        self._push("alert", (time.time(), kind, json.dumps(detail, default=str)[:2000]))

    def _push(self, kind: str, item: Any) -> None:
        with self._lock:
            self._pending.append((kind, item))
            dropped = MAX_PENDING // 10 if len(self._pending) > MAX_PENDING else 0
            if dropped:  # the writer is stuck: keep the newest, and log once per tenth dropped
                del self._pending[:dropped]
            due = self._thread is None and len(self._pending) >= INLINE_EVERY
        if dropped:
            safe_log("warning", "stats_backlog_full", dropped=dropped)
        if due:
            self.flush()

    # --- the writer -------------------------------------------------------------------------------
    def _loop(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            self.flush()

    def flush(self) -> None:
        """Write what is pending; a failure drops the batch (logged) and never raises."""
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch and time.time() - self._last_rollup < 600:
            return
        with self._db_lock:
            try:
                with self.db:
                    self._write(batch)
                    self._bound(time.time())
            except sqlite3.Error as exc:
                safe_log("warning", "stats_write_failed", error=type(exc).__name__, detail=str(exc)[:200],
                         dropped=len(batch))

    def _write(self, batch: Iterable[tuple[str, Any]]) -> None:
        for kind, item in batch:
            if kind == "event":
                self._write_event(item)
            elif kind == "attempt":
                self._add_bucket((int(item[0] // 60), "", item[1], "", "", ""), failed_attempts=1)
            elif kind == "feedback":
                ts, route, target, surface, score = item
                self._add_bucket((int(ts // 60), route, target, surface, "", ""), feedback_n=1, feedback_sum=score)
            else:
                self.db.execute("INSERT INTO alerts (ts, kind, detail) VALUES (?, ?, ?)", item)

    def _write_event(self, e: Event) -> None:
        minute = int(e.ts // 60)
        ok = e.status == 200
        self._add_bucket((minute, e.route, e.target, e.surface, e.tenant, e.source), requests=1, answers=int(ok),
                         errors=int(not ok), escalations=int(bool(e.escalated_from)), cap_hits=int(e.cap_hit),
                         fallbacks=e.fallbacks, cost=e.cost, cost_top=e.cost_top, cost_base=e.cost_base)
        if e.decision_ms is not None:
            self._add_hist(minute, e.route, "decision_ms", ms_bin(e.decision_ms))
        if ok:
            self._add_hist(minute, e.route, "e2e_ms", ms_bin(e.e2e_ms))
        if e.confidence is not None:
            self._add_hist(minute, e.route, "confidence", min(9, int(e.confidence * 10)))
        self.db.execute(
            "INSERT INTO recent (ts, route, source, confidence, target, surface, tenant, status, decision_ms, e2e_ms,"
            " cost, escalated_from, text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (e.ts, e.route, e.source, e.confidence, e.target, e.surface, e.tenant, e.status, e.decision_ms, e.e2e_ms,
             e.cost, e.escalated_from, e.text))

    def _add_bucket(self, key: tuple[Any, ...], **counts: float) -> None:
        cols = ", ".join(counts)
        self.db.execute(
            f"INSERT INTO buckets ({', '.join(KEY)}, {cols}) VALUES ({', '.join('?' * (len(KEY) + len(counts)))})"
            f" ON CONFLICT DO UPDATE SET {', '.join(f'{c} = {c} + excluded.{c}' for c in counts)}",
            (*key, *counts.values()))

    def _add_hist(self, minute: int, route: str, kind: str, b: int) -> None:
        self.db.execute("INSERT INTO hists VALUES (?, ?, ?, ?, 1) ON CONFLICT DO UPDATE SET n = n + 1",
                        (minute, route, kind, b))

    def _bound(self, now: float) -> None:
        """Keep the rings' sizes, and roll minute buckets past the retention into minute 0."""
        self.db.execute("DELETE FROM recent WHERE id <= (SELECT MAX(id) FROM recent) - ?", (self.recent_n,))
        self.db.execute("DELETE FROM alerts WHERE id <= (SELECT MAX(id) FROM alerts) - ?", (ALERTS_KEPT,))
        if now - self._last_rollup < 600:
            return
        self._last_rollup = now
        cutoff = int((now - self.retention_s) // 60)
        sums = ", ".join(f"SUM({c})" for c in COUNTS)
        self.db.execute(
            f"INSERT INTO buckets ({', '.join(KEY)}, {', '.join(COUNTS)}) SELECT 0, route, target, surface, tenant,"
            f" source, {sums} FROM buckets WHERE minute > 0 AND minute < ? GROUP BY route, target, surface, tenant,"
            f" source ON CONFLICT DO UPDATE SET {', '.join(f'{c} = {c} + excluded.{c}' for c in COUNTS)}", (cutoff,))
        self.db.execute(
            "INSERT INTO hists SELECT 0, route, kind, bin, SUM(n) FROM hists WHERE minute > 0 AND minute < ?"
            " GROUP BY route, kind, bin ON CONFLICT DO UPDATE SET n = n + excluded.n", (cutoff,))
        self.db.execute("DELETE FROM buckets WHERE minute > 0 AND minute < ?", (cutoff,))
        self.db.execute("DELETE FROM hists WHERE minute > 0 AND minute < ?", (cutoff,))

    # --- reads -------------------------------------------------------------------------------------
    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Rows of a read, after writing what is pending (a read sees every request recorded before it)."""
        self.flush()
        with self._db_lock:
            self.db.row_factory = sqlite3.Row
            try:
                return list(self.db.execute(sql, args))
            finally:
                self.db.row_factory = None

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()
        with self._db_lock:
            self.db.close()
