"""`llmrouter keys create|list|revoke`: the server's API keys (stored as salted hashes)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llmrouter.cli.app import _App, app, fail
from llmrouter.paths import user_dir

keys_app = _App(no_args_is_help=True, help="Create, list and revoke the server's API keys.")
app.add_typer(keys_app, name="keys")

FileOpt = typer.Option(None, "--file", "-f", help="The key file (default: ~/.cache/llmrouter/keys.json; "
                       "give it to `llmrouter serve --keys`).")


def _store(file: Optional[Path]):  # noqa: ANN202 - KeyStore, imported late
    from llmrouter.server.auth import KeyStore

    return KeyStore(file or user_dir("keys.json"))


def _names(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


@keys_app.command("create")
def create(
    tenant: str = typer.Option(..., help="Who the key belongs to (a label in metrics and logs)."),
    role: str = typer.Option("full", help="full: call completions and read the numbers; read: only read "
                             "/dashboard, /v1/stats and /metrics (every tenant's); call: only call completions."),
    tier: str = typer.Option("", help="The key's tier (a [tiers] name of the route table)."),
    rpm: int = typer.Option(0, min=0, help="Requests per minute (0: no limit)."),
    tpm: int = typer.Option(0, min=0, help="Prompt + completion tokens per minute (0: no limit)."),
    budget: float = typer.Option(0.0, min=0, help="Total spend in USD, at the targets' prices (0: no limit)."),
    routes: str = typer.Option("", help="Comma-separated routes it may be routed to (default: all)."),
    targets: str = typer.Option("", help="Comma-separated targets it may call directly (with --may-bypass)."),
    may_pin: bool = typer.Option(False, "--may-pin", help="Let it pin a route with x-llmrouter-pin."),
    may_bypass: bool = typer.Option(False, "--may-bypass", help="Let it name a target instead of model=\"router\"."),
    trusted_gateway: bool = typer.Option(False, "--trusted-gateway",
                                         help="Believe its x-llmrouter-tier/-key/-pin/-surface headers."),
    file: Optional[Path] = FileOpt,
) -> None:
    """Create a key; its secret is printed once and never stored."""
    if role not in ("full", "read", "call"):
        fail(f"--role must be full, read or call, not {role!r}")
    secret, record = _store(file).create(tenant, tier=tier, rpm=rpm, tpm=tpm, budget_usd=budget, role=role,
                                         routes=_names(routes), targets=_names(targets),
                                         may_pin=may_pin, may_bypass=may_bypass, trusted_gateway=trusted_gateway)
    typer.echo(secret)
    typer.secho(f"created key {record.id} for {record.tenant}: keep the line above, it is not stored", err=True)


@keys_app.command("list")
def list_(file: Optional[Path] = FileOpt) -> None:
    """The keys: id, tenant, tier, limits and grants (never a secret: none is stored)."""
    from rich.console import Console
    from rich.table import Table

    t = Table("id", "tenant", "role", "tier", "rpm", "tpm", "budget USD", "routes", "grants", "state")
    for k in _store(file).keys.values():
        grants = ", ".join(g for g, on in (("pin", k.may_pin), ("bypass", k.may_bypass),
                                            ("gateway", k.trusted_gateway)) if on) or "-"
        t.add_row(k.id, k.tenant, k.role, k.tier or "-", str(k.rpm or "-"), str(k.tpm or "-"),
                  f"{k.budget_usd:g}" if k.budget_usd else "-", ",".join(k.routes) or "all", grants,
                  "revoked" if k.revoked else "active")
    Console().print(t)


@keys_app.command("revoke")
def revoke(key_id: str = typer.Argument(..., help="The key's id (from `llmrouter keys list`)."),
           file: Optional[Path] = FileOpt) -> None:
    """Revoke a key: a running server refuses it from its next request."""
    if not _store(file).revoke(key_id):
        fail(f"no key with id {key_id!r}; see `llmrouter keys list`")
    typer.secho(f"revoked {key_id}", err=True)
