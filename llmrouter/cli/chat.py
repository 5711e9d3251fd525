"""`llmrouter chat`: route a prompt and stream the answer to the terminal."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from llmrouter.cli.app import ConfigOpt, app, fail
from llmrouter.errors import LLMRouterError


@app.command()
def chat(
    prompt: str = typer.Argument(..., help="What to ask; '-' reads it from stdin."),
    config: Path | None = ConfigOpt,
    model: str = typer.Option("router", help="'router' to route, or a target name to call it directly."),
    max_tokens: int | None = typer.Option(None, min=1, help="Longest answer, in tokens."),
    deadline: float | None = typer.Option(None, min=0.1, help="Seconds until the first token, all fallbacks included."),
) -> None:
    """Route a prompt and stream the answer to the terminal (route and target on stderr)."""
    from llmrouter.completion import run_sync
    from llmrouter.fallback import summarize_attempts
    from llmrouter.router import Router

    text = sys.stdin.read() if prompt == "-" else prompt

    async def main() -> None:
        stream = await router.open_stream(text, model=model, deadline_s=deadline, max_tokens=max_tokens)
        d = stream.decision
        where = "direct"
        if d is not None:
            where = f"route={d.route} ({d.source}" + (f", {d.confidence:.2f})" if d.confidence is not None else ")")
        skipped = summarize_attempts(stream.attempts)
        typer.secho(f"{where} -> {stream.target}" + (f"  [{skipped}]" if skipped else ""), err=True, dim=True)
        try:
            async for chunk in stream:
                sys.stdout.write(chunk.delta.get("content") or "")
                sys.stdout.flush()
        finally:
            await stream.aclose()
            await router.chain.aclose()
        sys.stdout.write("\n")

    try:
        router = Router.from_config(config)
        run_sync(main)
    except LLMRouterError as exc:
        sys.stdout.write("\n")
        fail(str(exc))
