"""`llmrouter models list|pull|rm`: the router models of the manifest."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from llmrouter import models
from llmrouter.cli.app import models_app

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


@models_app.command("list")
def models_list() -> None:
    """List the router models in the manifest and whether each is pulled."""
    table = Table("name", "params", "quant", "license", "verified", "pulled", "description")
    for spec in models.load_manifest().values():
        table.add_row(spec.name, spec.params, spec.quant, spec.license,
                      "yes" if spec.verified else "[yellow]no[/]",
                      "[green]yes[/]" if spec.is_pulled else "no", spec.description)
    out.print(table)
    out.print(f"[dim]models are kept in {models.models_dir()}[/]")


@models_app.command("pull")
def models_pull(
    name: str = typer.Argument(..., help="A model name from `llmrouter models list`."),
    force: bool = typer.Option(False, help="Download again even if already pulled."),
) -> None:
    """Download a router model, check its sha256, and put it in the model cache."""
    spec = models.load_manifest().get(name)
    if spec is not None and spec.is_pulled and not force:
        err.print(f"{name} is already pulled: {spec.path}")
        return
    if spec is not None and not spec.verified:
        err.print(f"[yellow]warning: {name} is not verified by llmrouter (no sha256 to check)[/]")
    path = models.pull(name, force=force)
    err.print(f"[green]pulled[/] {name} -> {path}")


@models_app.command("rm")
def models_rm(name: str) -> None:
    """Delete a pulled router model from the cache."""
    removed = models.remove(name)
    err.print(f"removed {name}" if removed else f"{name} was not pulled")
