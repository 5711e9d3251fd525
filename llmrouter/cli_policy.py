"""`llmrouter stats` (what routing did, from the logs) and `llmrouter replay` (what another table
would have done with the same requests)."""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from llmrouter import log as logmod
from llmrouter.cli import app, fail
from llmrouter.config import Config
from llmrouter.errors import RequestError
from llmrouter.policy.rules import CHARS_PER_TOKEN
from llmrouter.types import Request

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


def _pct(values: list[float], q: float) -> float | None:
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
            "decide_ms_p50": _pct(r["decide_ms"], 0.5), "decide_ms_p95": _pct(r["decide_ms"], 0.95),
            "answers": r["answers"], "latency_ms_p50": _pct(r["latency_ms"], 0.5),
            "latency_ms_p95": _pct(r["latency_ms"], 0.95), "prompt_tokens": r["prompt_tokens"],
            "completion_tokens": r["completion_tokens"], "cost_usd": round(r["cost_usd"], 6),
            "fallbacks": r["fallbacks"], "feedback": len(r["feedback"]),
            "mean_score": round(statistics.fmean(r["feedback"]), 4) if r["feedback"] else None,
        }
    return {"decisions": total, "routes": rows, "alerts": dict(alerts),
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
    if summary["alerts"]:
        out.print("[yellow]alerts[/]: " + ", ".join(f"{k} x{v}" for k, v in sorted(summary["alerts"].items())))


# --- replay --------------------------------------------------------------------------------
def logged_requests(path: Path) -> list[tuple[Request, str | None]]:
    """(request, the route it got) from decision events with a logged request ([replay]
    log_requests), or from plain JSON lines with `prompt`/`text`/`messages` (+ `metadata`, `route`)."""
    items: list[tuple[Request, str | None]] = []
    for e in read_events(path):
        if e.get("event") == "decision":
            body = e.get("request")
            if not isinstance(body, dict):
                continue
            value, old = body, e.get("route")
        elif "messages" in e or "prompt" in e or "text" in e:
            value = e if "messages" in e else {"messages": [{"role": "user", "content": e.get("prompt", e.get("text"))}],
                                               "metadata": e.get("metadata") or {}}
            old = e.get("route")
        else:
            continue
        try:
            items.append((Request.of(value), old if isinstance(old, str) else None))
        except RequestError:
            continue
    return items


def _estimate(config: Config, route: str, req: Request, out_tokens: int) -> tuple[float, float]:
    """(USD, ms) for a request on a route: its first target's prices and typical latency."""
    table = config.table
    if route not in table:
        return 0.0, 0.0
    names = table[route].targets or table[table.default_route].targets
    if not names:
        return 0.0, 0.0
    t = config.targets[names[0]]
    tokens_in = sum(len(m.text) for m in req.messages) / CHARS_PER_TOKEN
    return (tokens_in * t.input_price + out_tokens * t.output_price) / 1e6, t.latency_ms


@app.command()
def replay(
    logfile: Path = typer.Argument(..., help="Decision log with logged requests, or JSONL of requests."),
    config: Path = typer.Option(..., "--config", "-c", help="The route table to replay under."),
    baseline: Optional[Path] = typer.Option(None, help="The table the log was made with (prices; routes "
                                            "for requests the log has none for). Default: --config's targets."),
    output_tokens: int = typer.Option(300, help="Answer length assumed for cost estimates."),
    out_prefix: Optional[Path] = typer.Option(None, "--out", help="Write OUT.json and OUT.md."),
    limit: int = typer.Option(0, help="Replay at most this many requests (0: all)."),
) -> None:
    """Re-decide logged requests under another table or prompt; report route, cost and latency changes."""
    logmod.configure(level="error")
    from llmrouter.router import Router

    items = logged_requests(logfile)[: limit or None]
    if not items:
        fail(f"no replayable requests in {logfile}: log with [replay] log_requests = true, "
             "or give JSON lines with prompt/messages")
    new_cfg = Config.load(config).with_router(cache=False)
    old_cfg = Config.load(baseline).with_router(cache=False) if baseline else new_cfg
    new_router = Router(new_cfg)
    old_router = None
    if any(old is None for _, old in items):
        old_router = Router(old_cfg) if baseline else fail("some requests have no logged route: pass --baseline")
    confusion: Counter[tuple[str, str]] = Counter()
    cost_old = cost_new = lat_old = lat_new = 0.0
    decide_ms: list[float] = []
    for req, old in items:
        if old is None:
            old = old_router.decide(req).route  # type: ignore[union-attr]
        d = new_router.decide(req)
        decide_ms.append(d.timings.total_ms)
        confusion[(old, d.route)] += 1
        usd, ms = _estimate(old_cfg, old, req, output_tokens)
        cost_old, lat_old = cost_old + usd, lat_old + ms
        usd, ms = _estimate(new_cfg, d.route, req, output_tokens)
        cost_new, lat_new = cost_new + usd, lat_new + ms
    new_router.close()
    n = len(items)
    changed = sum(v for (a, b), v in confusion.items() if a != b)
    report = {
        "requests": n, "changed": changed, "changed_share": round(changed / n, 4),
        "confusion": {f"{a}->{b}": v for (a, b), v in sorted(confusion.items())},
        "old_share": dict(Counter(a for (a, _), v in confusion.items() for _ in range(v))),
        "new_share": dict(Counter(b for (_, b), v in confusion.items() for _ in range(v))),
        "cost_usd": {"old": round(cost_old, 6), "new": round(cost_new, 6), "delta": round(cost_new - cost_old, 6)},
        "latency_ms_mean": {"old": round(lat_old / n, 1), "new": round(lat_new / n, 1),
                            "delta": round((lat_new - lat_old) / n, 1)},
        "decide_ms_p50": _pct(decide_ms, 0.5), "output_tokens_assumed": output_tokens,
        "config": str(config), "baseline": str(baseline) if baseline else None,
    }
    md = replay_markdown(report)
    if out_prefix:
        out_prefix.parent.mkdir(parents=True, exist_ok=True)
        Path(f"{out_prefix}.json").write_text(json.dumps(report, indent=2) + "\n")
        Path(f"{out_prefix}.md").write_text(md)
    typer.echo(md)


def replay_markdown(r: dict[str, Any]) -> str:
    routes = sorted(set(r["old_share"]) | set(r["new_share"]))
    lines = [f"# Replay under {r['config']}", "",
             f"{r['requests']} requests; {r['changed']} ({r['changed_share']:.1%}) change route.", "",
             "| old \\ new | " + " | ".join(routes) + " |", "|---|" + "---:|" * len(routes)]
    for a in routes:
        lines.append(f"| {a} | " + " | ".join(str(r["confusion"].get(f"{a}->{b}", 0)) for b in routes) + " |")
    c, lat = r["cost_usd"], r["latency_ms_mean"]
    lines += ["", "| | old | new | delta |", "|---|---:|---:|---:|",
              f"| est. cost (USD, {r['output_tokens_assumed']} output tokens each) | {c['old']:.4f} | {c['new']:.4f} | {c['delta']:+.4f} |",
              f"| est. target latency (ms, mean) | {lat['old']:.0f} | {lat['new']:.0f} | {lat['delta']:+.0f} |", ""]
    return "\n".join(lines)
