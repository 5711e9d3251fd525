"""`llmrouter stats`: what routing did, per route, from llmrouter's JSON logs."""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from llmrouter.cli.app import app, fail

out = Console(soft_wrap=True)


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON objects of a JSON-lines log; other lines (console output, junk) are skipped."""
    try:
        f = path.open("r", encoding="utf-8", errors="replace")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
        return
    with f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                yield event


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def summarize(events: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """Per-route numbers from decision, completion, provider_attempt, feedback and alert events."""
    routes: dict[str, dict[str, Any]] = defaultdict(lambda: {
        "decisions": 0, "sources": Counter(), "confidence": [], "escalations": 0, "surfaces": Counter(),
        "decide_ms": [], "answers": 0, "latency_ms": [], "prompt_tokens": 0, "completion_tokens": 0,
        "cost_usd": 0.0, "fallbacks": 0, "errors": 0, "feedback": []})
    targets: Counter[tuple[str, str]] = Counter()
    alerts: Counter[str] = Counter()
    tenants: dict[str, dict[str, float]] = defaultdict(lambda: {"answers": 0, "tokens": 0, "cost_usd": 0.0})
    for e in events:
        kind = e.get("event")
        if kind == "decision" and isinstance(e.get("route"), str):
            r = routes[e["route"]]
            r["decisions"] += 1
            r["sources"][str(e.get("source"))] += 1
            r["surfaces"][str(e.get("surface") or "-")] += 1
            if isinstance(e.get("confidence"), (int, float)):
                r["confidence"].append(float(e["confidence"]))
            if e.get("escalated_from"):
                r["escalations"] += 1
            if isinstance(e.get("total_ms"), (int, float)):
                r["decide_ms"].append(float(e["total_ms"]))
        elif kind == "completion":
            r = routes[str(e.get("route") or "-")]
            r["answers"] += 1
            r["latency_ms"].append(float(e.get("latency_ms") or 0))
            r["prompt_tokens"] += int(e.get("prompt_tokens") or 0)
            r["completion_tokens"] += int(e.get("completion_tokens") or 0)
            r["cost_usd"] += float(e.get("cost_usd") or 0)
            r["fallbacks"] += int(e.get("fallbacks") or 0)
            targets[(str(e.get("route") or "-"), str(e.get("target")))] += 1
            if e.get("tenant"):
                t = tenants[str(e["tenant"])]
                t["answers"] += 1
                t["tokens"] += int(e.get("prompt_tokens") or 0) + int(e.get("completion_tokens") or 0)
                t["cost_usd"] += float(e.get("cost_usd") or 0)
        elif kind == "provider_attempt" and e.get("outcome") == "failed":
            pass  # counted per answer as fallbacks; an attempt alone does not say the request failed
        elif kind == "feedback" and isinstance(e.get("score"), (int, float)):
            routes[str(e.get("route") or "-")]["feedback"].append(float(e["score"]))
        elif kind == "alert":
            alerts[str(e.get("kind"))] += 1
    total = sum(r["decisions"] for r in routes.values())
    rows = {}
    for name, r in sorted(routes.items()):
        rows[name] = {
            "decisions": r["decisions"], "share": round(r["decisions"] / total, 4) if total else None,
            "by_source": dict(r["sources"]), "by_surface": dict(r["surfaces"]),
            "mean_confidence": round(statistics.fmean(r["confidence"]), 4) if r["confidence"] else None,
            "escalations": r["escalations"],
            "decide_ms_p50": pct(r["decide_ms"], 0.5), "decide_ms_p95": pct(r["decide_ms"], 0.95),
            "answers": r["answers"], "latency_ms_p50": pct(r["latency_ms"], 0.5),
            "latency_ms_p95": pct(r["latency_ms"], 0.95), "prompt_tokens": r["prompt_tokens"],
            "completion_tokens": r["completion_tokens"], "cost_usd": round(r["cost_usd"], 6),
            "fallbacks": r["fallbacks"], "feedback": len(r["feedback"]),
            "mean_score": round(statistics.fmean(r["feedback"]), 4) if r["feedback"] else None,
        }
    return {"decisions": total, "routes": rows, "alerts": dict(alerts),
            "tenants": {k: {**v, "cost_usd": round(v["cost_usd"], 6)} for k, v in sorted(tenants.items())},
            "targets": {f"{r}->{t}": n for (r, t), n in sorted(targets.items())}}


@app.command()
def stats(
    logfile: Path = typer.Argument(..., help="A JSON-lines log of llmrouter (LLMROUTER_LOG_FORMAT=json)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Summarise routing per route from a log: decisions, confidence, escalations, latency, cost, feedback."""
    summary = summarize(read_events(logfile))
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
        return
    if not summary["decisions"] and not summary["routes"]:
        fail(f"no llmrouter events in {logfile} (is it a JSON log? set LLMROUTER_LOG_FORMAT=json)")
    t = Table("route", "decisions", "share", "sources", "conf", "escal.", "answers", "p50 ms", "p95 ms",
              "tokens in/out", "cost USD", "fallbacks", "score")
    fmt = lambda v, f="{:.0f}": "-" if v is None else f.format(v)  # noqa: E731
    for name, r in summary["routes"].items():
        t.add_row(name, str(r["decisions"]), fmt(r["share"], "{:.1%}"),
                  " ".join(f"{k}:{v}" for k, v in sorted(r["by_source"].items())),
                  fmt(r["mean_confidence"], "{:.2f}"), str(r["escalations"]), str(r["answers"]),
                  fmt(r["latency_ms_p50"]), fmt(r["latency_ms_p95"]),
                  f"{r['prompt_tokens']}/{r['completion_tokens']}", f"{r['cost_usd']:.4f}", str(r["fallbacks"]),
                  fmt(r["mean_score"], "{:.2f}") + (f" (n={r['feedback']})" if r["feedback"] else ""))
    out.print(t)
    if summary["tenants"]:
        tt = Table("tenant", "answers", "tokens", "cost USD")
        for name, v in summary["tenants"].items():
            tt.add_row(name, str(int(v["answers"])), str(int(v["tokens"])), f"{v['cost_usd']:.4f}")
        out.print(tt)
    if summary["alerts"]:
        out.print("[yellow]alerts[/]: " + ", ".join(f"{k} x{v}" for k, v in sorted(summary["alerts"].items())))
