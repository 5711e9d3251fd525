"""`llmrouter serve`: the OpenAI-compatible server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from llmrouter.cli.app import ConfigOpt, app


@app.command()
def serve(
    config: Path | None = ConfigOpt,
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    deadline: float | None = typer.Option(None, min=0.1,
                                          help="Seconds each request may take, retries and fallbacks included. "
                                          "Default: the table's \\[fallback] deadline_s (60)."),
    max_retries: int | None = typer.Option(None, min=0, help="Retries per target for retryable failures. "
                                           "Default: the table's \\[fallback] max_retries (2)."),
    decide_wait: float | None = typer.Option(None, min=0, help="Longest wait for the busy router model before a "
                                             "request takes the cheap stage's decision (0: always wait). "
                                             "Default: the table's \\[fallback] decide_wait_s, else 5."),
    max_body_mb: float = typer.Option(4.0, min=0.01, help="Largest request body accepted, in MiB."),
    keys: Path | None = typer.Option(None, "--keys", help="API key file (`llmrouter keys create`): every endpoint "
                                     "but /healthz then needs `Authorization: Bearer <key>`. Default: the "
                                     "table's \\[auth] keys_file."),
    insecure: bool = typer.Option(False, "--insecure", help="Serve a non-loopback --host without API keys."),
    log_level: str = typer.Option("info", help="Log level (also LLMROUTER_LOG_LEVEL); the format follows "
                                  "LLMROUTER_LOG_FORMAT=json|console."),
) -> None:
    """Serve an OpenAI-compatible API (base_url http://HOST:PORT/v1) that routes every request."""
    import os

    import uvicorn

    from llmrouter import log as logmod
    from llmrouter.config import Config
    from llmrouter.router import Router
    from llmrouter.server import create_app


    table = Config.load(config)
    store = _key_store(keys or (table.auth.keys_path(table.path) if table.auth else None), host, insecure)
    # one log for llmrouter and uvicorn: structlog's format, redaction on, no request text
    logmod.configure(level=os.environ.get("LLMROUTER_LOG_LEVEL") or log_level, stdlib=True)
    router = Router(table)  # after the key check: a refusal costs no model load
    fb = router.config.fallback
    if decide_wait is None:
        decide_wait = fb.decide_wait_s if fb.decide_wait_s is not None else 5.0
    policy = fb.with_overrides(deadline_s=deadline, max_retries=max_retries)
    policy = policy.model_copy(update={"decide_wait_s": decide_wait or None})
    stats_path = table.dashboard.stats_path(table.router.cache_path, table.path)
    web = create_app(router, policy=policy, max_body_bytes=int(max_body_mb * 1024 * 1024), keys=store,
                     stats_path=stats_path)
    logmod.get_logger("llmrouter").info("serving", base_url=f"http://{host}:{port}/v1", model="router",
                                        dashboard=f"http://{host}:{port}/dashboard", stats_file=str(stats_path))
    uvicorn.run(web, host=host, port=port, log_config=None, log_level=log_level.lower(), timeout_graceful_shutdown=5)


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _key_store(keys: Path | None, host: str, insecure: bool) -> Any:
    """The API keys to serve with; without them, only loopback unless --insecure (loudly)."""
    from llmrouter.cli.app import fail
    from llmrouter.server.auth import KeyStore

    if keys is not None:
        if not keys.is_file():
            fail(f"no key file at {keys}: create one with `llmrouter keys create --tenant NAME --file {keys}`")
        return KeyStore(keys)
    if host not in LOOPBACK:
        if not insecure:
            fail(f"refusing to serve {host} without API keys: anyone who reaches the port would spend on the "
                 "provider keys in this environment. Pass --keys FILE (`llmrouter keys create`), or --insecure")
        typer.secho(f"WARNING: serving {host} with no authentication (--insecure)", fg="red", err=True)
    return None
