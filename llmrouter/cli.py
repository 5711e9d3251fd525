"""The `llmrouter` command line: one function per command, its docstring's first line is its help."""

from __future__ import annotations

import sys
import typer

from llmrouter.errors import LLMRouterError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Route each LLM request to the right model with a small local LLM as the router.",
    pretty_exceptions_enable=False,
)
models_app = typer.Typer(no_args_is_help=True, help="List and pull router models.")
routes_app = typer.Typer(no_args_is_help=True, help="Check and show route tables.")
app.add_typer(models_app, name="models")
app.add_typer(routes_app, name="routes")

ConfigOpt = typer.Option(None, "--config", "-c", help="Route table (TOML). Default: the packaged table.")


def fail(message: str, code: int = 1) -> None:
    """Print a user-facing error (no traceback) and exit."""
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def main() -> None:
    try:
        app()
    except LLMRouterError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


# --- commands live in their own modules and register themselves on `app` ---
from llmrouter import cli_core  # noqa: E402,F401  route, models, routes
from llmrouter import cli_serve  # noqa: E402,F401  serve, chat
