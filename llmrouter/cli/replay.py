"""`llmrouter replay`: what another route table or prompt would have done with logged requests."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import typer

from llmrouter import log as logmod
from llmrouter.cli.app import app, fail
from llmrouter.cli.stats import pct, read_events
from llmrouter.config import Config
from llmrouter.errors import RequestError
from llmrouter.policy.rules import CHARS_PER_TOKEN
from llmrouter.types import Request


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
    names = table.targets_of(route)
    if not names:
        return 0.0, 0.0
    t = config.targets[names[0]]
    tokens_in = sum(len(m.text) for m in req.messages) / CHARS_PER_TOKEN
    return t.cost_usd(tokens_in, out_tokens), t.latency_ms


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
        "decide_ms_p50": pct(decide_ms, 0.5), "output_tokens_assumed": output_tokens,
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
