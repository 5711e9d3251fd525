"""What /v1/stats answers: the StatsStore's buckets over a window, as JSON for the page and scripts.

    window       5m, 1h, 24h or all
    totals       requests, answers, errors, escalations, cap hits, fallbacks, spend, what it would
                 have cost on the most expensive route and on the baseline route, and the savings
    routes       the same per route, with decision (the router's latency tax) and end-to-end p50/p95,
                 and the mean feedback score
    targets, surfaces, tenants, sources, confidence (tenths), alerts, recent decisions
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any

from llmrouter.server.stats_store import COUNTS, StatsStore, bin_ms

WINDOWS = {"5m": 300.0, "1h": 3600.0, "24h": 86400.0, "all": None}
SUMS = ", ".join(f"SUM({c}) AS {c}" for c in COUNTS)


class BadWindow(ValueError):
    pass


def window_start(window: str, now: float) -> int:
    """The first minute a window covers (0: all, rolled-up buckets included)."""
    if window not in WINDOWS:
        raise BadWindow(f"unknown window {window[:20]!r}: use one of {', '.join(WINDOWS)}")
    span = WINDOWS[window]
    return 0 if span is None else int((now - span) // 60) + 1


def snapshot(store: StatsStore, window: str, now: float | None = None) -> dict[str, Any]:
    """Everything the dashboard shows for `window`."""
    now = time.time() if now is None else now
    start = window_start(window, now)
    hists = _hists(store, start)
    routes = [{"route": r["route"], **_counts(r), "decision_ms": _quantiles(hists["decision_ms"].get(r["route"], {})),
               "e2e_ms": _quantiles(hists["e2e_ms"].get(r["route"], {}))}
              for r in _grouped(store, "route", start) if r["route"]]
    totals = _counts(store.query(f"SELECT {SUMS} FROM buckets WHERE minute >= ?", (start,))[0])
    merged = {k: _merge(hists[k]) for k in ("decision_ms", "e2e_ms")}
    totals.update(decision_ms=_quantiles(merged["decision_ms"]), e2e_ms=_quantiles(merged["e2e_ms"]))
    conf = _merge(hists["confidence"])
    return {
        "window": window, "now": now, "since": None if start == 0 else start * 60,
        "totals": totals, "routes": routes,
        "targets": [{"target": r["target"], **_counts(r)} for r in _grouped(store, "target", start) if r["target"]],
        "surfaces": [{"surface": r["surface"], **_counts(r)} for r in _grouped(store, "surface", start) if r["surface"]],
        "tenants": [{"tenant": r["tenant"], **_counts(r)} for r in _grouped(store, "tenant", start) if r["tenant"]],
        "sources": {r["source"]: r["requests"] for r in _grouped(store, "source", start) if r["source"]},
        "confidence": [{"from": i / 10, "to": (i + 1) / 10, "n": int(conf.get(i, 0))} for i in range(10)],
        "alerts": _alerts(store, start),
        "recent": _recent(store, start),
    }


def _grouped(store: StatsStore, column: str, start: int) -> list[Any]:
    return store.query(f"SELECT {column}, {SUMS} FROM buckets WHERE minute >= ? GROUP BY {column}"
                       f" ORDER BY SUM(requests) DESC, {column}", (start,))


def empty_counts() -> dict[str, Any]:
    """The counts of something that saw no traffic."""
    return _counts({k: 0 for k in COUNTS})


def _counts(row: Any) -> dict[str, Any]:
    c = {k: (row[k] or 0) for k in COUNTS}
    out: dict[str, Any] = {k: int(c[k]) for k in ("requests", "answers", "errors", "escalations", "cap_hits",
                                                  "fallbacks", "failed_attempts")}
    out.update(cost_usd=c["cost"], cost_if_top_usd=c["cost_top"], saved_vs_top_usd=c["cost_top"] - c["cost"],
               cost_if_baseline_usd=c["cost_base"], saved_vs_baseline_usd=c["cost_base"] - c["cost"],
               feedback={"n": int(c["feedback_n"]),
                         "mean": c["feedback_sum"] / c["feedback_n"] if c["feedback_n"] else None})
    return out


def _hists(store: StatsStore, start: int) -> dict[str, dict[str, dict[int, int]]]:
    out: dict[str, dict[str, dict[int, int]]] = {k: defaultdict(dict) for k in ("decision_ms", "e2e_ms", "confidence")}
    for r in store.query("SELECT kind, route, bin, SUM(n) AS n FROM hists WHERE minute >= ? GROUP BY kind, route, bin",
                         (start,)):
        if r["kind"] in out:
            out[r["kind"]][r["route"]][r["bin"]] = r["n"]
    return out


def _merge(per_route: dict[str, dict[int, int]]) -> dict[int, int]:
    total: dict[int, int] = defaultdict(int)
    for bins in per_route.values():
        for b, n in bins.items():
            total[b] += n
    return total


def _quantiles(bins: dict[int, int]) -> dict[str, float | None]:
    """p50 and p95 of a latency histogram (each within ~5% of the true value), in ms."""
    n = sum(bins.values())
    out: dict[str, float | None] = {"p50": None, "p95": None, "n": n}
    seen = 0
    for b in sorted(bins):
        seen += bins[b]
        for name, q in (("p50", 0.5), ("p95", 0.95)):
            if out[name] is None and seen >= q * n:
                out[name] = round(bin_ms(b), 2)
    return out


def _alerts(store: StatsStore, start: int) -> list[dict[str, Any]]:
    rows = store.query("SELECT ts, kind, detail FROM alerts WHERE ts >= ? ORDER BY id DESC LIMIT 50", (start * 60,))
    return [{"ts": r["ts"], "kind": r["kind"], "detail": json.loads(r["detail"] or "{}")} for r in rows]


def _recent(store: StatsStore, start: int) -> list[dict[str, Any]]:
    rows = store.query("SELECT * FROM recent WHERE ts >= ? ORDER BY id DESC LIMIT 100", (start * 60,))
    out = []
    for r in rows:
        item = {k: r[k] for k in r.keys() if k not in ("id", "text")}
        if r["text"] is not None:
            item["text"] = r["text"]
        out.append(item)
    return out
