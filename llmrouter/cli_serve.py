"""`llmrouter serve` and `llmrouter chat` (providers and the OpenAI-compatible server)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import typer

from llmrouter.cli import ConfigOpt, app, fail
from llmrouter.errors import LLMRouterError


@app.command()
def serve(
    config: Path | None = ConfigOpt,
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    deadline: float | None = typer.Option(None, min=0.1,
                                          help="Seconds each request may take, retries and fallbacks included. "
                                          "Default: the table's [fallback] deadline_s (60)."),
    max_retries: int | None = typer.Option(None, min=0, help="Retries per target for retryable failures. "
                                           "Default: the table's [fallback] max_retries (2)."),
    decide_wait: float | None = typer.Option(None, min=0, help="Longest wait for the busy router model before a "
                                             "request takes the default route (0: always wait). Default: the "
                                             "table's [fallback] decide_wait_s, else 5."),
    max_body_mb: float = typer.Option(4.0, min=0.01, help="Largest request body accepted, in MiB."),
    log_level: str = typer.Option("warning", help="uvicorn log level."),
) -> None:
    """Serve an OpenAI-compatible API (base_url http://HOST:PORT/v1) that routes every request."""
    import uvicorn

    from llmrouter.router import Router
    from llmrouter.server import create_app

    router = Router.from_config(config)
    fb = router.config.fallback
    if decide_wait is None:
        decide_wait = fb.decide_wait_s if fb.decide_wait_s is not None else 5.0
    policy = fb.policy(deadline_s=deadline, max_retries=max_retries)
    policy = dataclasses.replace(policy, decide_wait_s=decide_wait or None)
    web = create_app(router, policy=policy, max_body_bytes=int(max_body_mb * 1024 * 1024))
    typer.secho(f"llmrouter: OpenAI-compatible API on http://{host}:{port}/v1 (model='router')", err=True)
    uvicorn.run(web, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)


@app.command()
def chat(
    prompt: str = typer.Argument(..., help="What to ask; '-' reads it from stdin."),
    config: Path | None = ConfigOpt,
    model: str = typer.Option("router", help="'router' to route, or a target name to call it directly."),
    max_tokens: int | None = typer.Option(None, min=1, help="Longest answer, in tokens."),
    deadline: float | None = typer.Option(None, min=0.1, help="Seconds until the first token, all fallbacks included."),
) -> None:
    """Route a prompt and stream the answer to the terminal (route and target on stderr)."""
    from llmrouter.completion import chain_for, open_stream, run_sync
    from llmrouter.fallback import summarize_attempts
    from llmrouter.router import Router

    text = sys.stdin.read() if prompt == "-" else prompt

    async def main() -> None:
        stream = await open_stream(router, text, model=model, deadline_s=deadline, max_tokens=max_tokens)
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
            await chain_for(router).aclose()
        sys.stdout.write("\n")

    try:
        router = Router.from_config(config)
        run_sync(main)
    except LLMRouterError as exc:
        sys.stdout.write("\n")
        fail(str(exc))
