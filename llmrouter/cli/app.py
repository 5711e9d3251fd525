"""The `llmrouter` Typer app that every command module registers on, and how errors reach the user."""

from __future__ import annotations

import functools
import sys
from typing import Any, Callable, NoReturn

import typer

from llmrouter.errors import LLMRouterError


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a user-facing error (no traceback) and exit."""
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


class _App(typer.Typer):
    """A Typer whose commands turn LLMRouterError into a clean message and exit code 1."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:  # type: ignore[override]
        register = super().command(*args, **kwargs)

        def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(func)
            def run(*a: Any, **kw: Any) -> Any:
                try:
                    return func(*a, **kw)
                except LLMRouterError as exc:
                    fail(str(exc))

            register(run)
            return func

        return wrap


app = _App(
    no_args_is_help=True,
    add_completion=False,
    help="Route each LLM request to the right model with a small local LLM as the router.",
    pretty_exceptions_enable=False,
)
models_app = _App(no_args_is_help=True, help="List and pull router models.")
routes_app = _App(no_args_is_help=True, help="Check and show route tables.")


@app.callback()
def _quiet(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log each decision and answer (INFO).")) -> None:
    """Warnings and errors only where people read the output, unless -v or LLMROUTER_LOG_LEVEL."""
    import os

    from llmrouter import log as logmod

    logmod.configure(level="info" if verbose else os.environ.get("LLMROUTER_LOG_LEVEL") or "warning", stdlib=True)


app.add_typer(models_app, name="models")
app.add_typer(routes_app, name="routes")

ConfigOpt = typer.Option(None, "--config", "-c", help="Route table (TOML). Default: the packaged table.")


def main() -> None:
    try:
        app()
    except LLMRouterError as exc:  # raised outside a command (e.g. while importing a config)
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
