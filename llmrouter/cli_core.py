"""`llmrouter route`, `llmrouter models ...` and `llmrouter routes ...`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from llmrouter import log as logmod
from llmrouter import registry
from llmrouter.cli import ConfigOpt, app, fail, models_app, routes_app
from llmrouter.config import Config
from llmrouter.errors import LLMRouterError
from llmrouter.types import Decision, Request

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


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


@models_app.command("list")
def models_list() -> None:
    """List the router models in the manifest and whether each is pulled."""
    table = Table("name", "params", "quant", "license", "verified", "pulled", "description")
    for spec in registry.load_manifest().values():
        table.add_row(spec.name, spec.params, spec.quant, spec.license,
                      "yes" if spec.verified else "[yellow]no[/]",
                      "[green]yes[/]" if spec.is_pulled else "no", spec.description)
    out.print(table)
    out.print(f"[dim]models are kept in {registry.models_dir()}[/]")


@models_app.command("pull")
def models_pull(
    name: str = typer.Argument(..., help="A model name from `llmrouter models list`."),
    force: bool = typer.Option(False, help="Download again even if already pulled."),
) -> None:
    """Download a router model, check its sha256, and put it in the model cache."""
    spec = registry.load_manifest().get(name)
    if spec is not None and spec.is_pulled and not force:
        err.print(f"{name} is already pulled: {spec.path}")
        return
    if spec is not None and not spec.verified:
        err.print(f"[yellow]warning: {name} is not verified by llmrouter (no sha256 to check)[/]")
    path = registry.pull(name, force=force)
    err.print(f"[green]pulled[/] {name} -> {path}")


@models_app.command("rm")
def models_rm(name: str) -> None:
    """Delete a pulled router model from the cache."""
    removed = registry.remove(name)
    err.print(f"removed {name}" if removed else f"{name} was not pulled")


@routes_app.command("check")
def routes_check(path: Path = typer.Argument(..., help="The route table to check.")) -> None:
    """Validate a route table and say what is wrong, every problem at once."""
    try:
        config = Config.load(path)
    except LLMRouterError as exc:
        fail(str(exc).split("\n  hint:")[0])
        return
    t = config.table
    out.print(f"[green]ok[/] {path}: {len(t.routes)} routes, default {t.default_route!r}, "
              f"{len(config.targets)} targets, fingerprint {t.fingerprint}")
    for name, target in config.targets.items():
        if target.api_key_env and not os.environ.get(target.api_key_env):
            out.print(f"[yellow]note[/]: target {name!r} reads its key from ${target.api_key_env}, "
                      "which is not set here")
    for r in t.routes:
        if len(r.examples) < 2:
            out.print(f"[yellow]note[/]: route {r.name!r} has {len(r.examples)} example(s); "
                      "2 or more help the router")
        if not r.targets:
            out.print(f"[yellow]note[/]: route {r.name!r} has no targets (decide-only)")


@routes_app.command("show")
def routes_show(config: Optional[Path] = ConfigOpt) -> None:
    """Print a route table as TOML (the packaged default unless --config)."""
    typer.echo(Config.load(config).to_toml())
