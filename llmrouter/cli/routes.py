"""`llmrouter routes check|show`: route tables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from llmrouter.cli.app import ConfigOpt, fail, routes_app
from llmrouter.config import Config
from llmrouter.errors import LLMRouterError

out = Console(soft_wrap=True)


@routes_app.command("check")
def routes_check(path: Path = typer.Argument(..., help="The route table to check.")) -> None:
    """Validate a route table and say what is wrong, every problem at once."""
    try:
        config = Config.load(path)
    except LLMRouterError as exc:
        fail(exc.message)
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
