"""`llmrouter route`: the decision for one request."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from llmrouter import log as logmod
from llmrouter.cli.app import ConfigOpt, app
from llmrouter.types import Decision, Request

out = Console(soft_wrap=True)


def _read_text(text: str) -> Request:
    if text == "-":
        return Request.of(sys.stdin.buffer.read())
    return Request.of(text)


@app.command()
def route(
    text: str = typer.Argument(..., help="The request to route, or - to read it from stdin."),
    config: Optional[Path] = ConfigOpt,
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
    explain: bool = typer.Option(False, "--explain", help="Also generate the model's short reason."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Ask the model even if the decision is cached."),
    model: Optional[str] = typer.Option(None, help="Router model: manifest name or .gguf path."),
    threads: Optional[int] = typer.Option(None, help="llama.cpp threads for the router."),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Log the decision event on stderr."),
) -> None:
    """Pick the route for one request and print the decision."""
    logmod.configure(level="info" if verbose else "warning")
    from llmrouter.router import Router

    overrides = {k: v for k, v in {"model": model, "threads": threads}.items() if v is not None}
    request = _read_text(text)
    router = Router.from_config(config, **overrides)
    decision = router.decide(request, explain=explain, use_cache=not no_cache)
    router.close()
    if as_json:
        typer.echo(json.dumps(decision.to_json(), ensure_ascii=False))
    else:
        _print_decision(decision, router.table.default_route)


def _print_decision(d: Decision, default: str) -> None:
    conf = "-" if d.confidence is None else f"{d.confidence:.0%}"
    out.print(f"[bold green]{d.route}[/]  confidence {conf}  [dim]source={d.source} "
              f"decider={d.decider or '-'} {d.timings.total_ms:.0f} ms[/]")
    if d.reason:
        out.print(f"  [italic]{d.reason}[/]")
    if d.truncated:
        out.print(f"  [yellow]request truncated to {d.request_tokens} tokens (head and tail kept)[/]")
    top = sorted(d.scores.items(), key=lambda kv: -kv[1])[:3]
    if len(top) > 1:
        out.print("  [dim]" + "  ".join(f"{k} {v:.0%}" for k, v in top) + "[/]")
