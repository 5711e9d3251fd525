"""`llmrouter serve`: the OpenAI-compatible server, in one process or `--workers N`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from llmrouter.cli.app import ConfigOpt, app

WORKER_ENV = "LLMROUTER_SERVE_WORKER"  # how a worker process learns the options it serves with


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
    workers: int = typer.Option(1, min=1, max=64, help="Server processes on this port, each with its own router "
                                "model. Caps, budgets and key limits then need the table's \\[state] url."),
    log_level: str = typer.Option("info", help="Log level (also LLMROUTER_LOG_LEVEL); the format follows "
                                  "LLMROUTER_LOG_FORMAT=json|console."),
) -> None:
    """Serve an OpenAI-compatible API (base_url http://HOST:PORT/v1) that routes every request."""
    import uvicorn

    from llmrouter import log as logmod
    from llmrouter.config import Config

    table = Config.load(config)
    keys = keys or (table.auth.keys_path(table.path) if table.auth else None)
    store = _key_store(keys, host, insecure)
    if workers > 1:
        _refuse_unshared_limits(table, store, workers)
    options = {"config": str(config) if config else None, "keys": str(keys) if store is not None else None,
               "deadline": deadline, "max_retries": max_retries, "decide_wait": decide_wait,
               "max_body_mb": max_body_mb, "log_level": log_level}
    # one log for llmrouter and uvicorn: structlog's format, redaction on, no request text
    logmod.configure(level=os.environ.get("LLMROUTER_LOG_LEVEL") or log_level, stdlib=True)
    run: dict[str, Any] = {"host": host, "port": port, "log_config": None, "log_level": log_level.lower(),
                           "timeout_graceful_shutdown": 5}
    web = build_app(options, table) if workers == 1 else None
    logmod.get_logger("llmrouter").info("serving", base_url=f"http://{host}:{port}/v1", model="router",
                                        workers=workers, dashboard=f"http://{host}:{port}/dashboard",
                                        stats_file=str(table.dashboard.stats_path(table.router.cache_path, table.path)))
    if web is not None:
        uvicorn.run(web, **run)
        return
    os.environ[WORKER_ENV] = json.dumps(options)  # each worker (a spawned process) builds its own app
    uvicorn.run(f"{__name__}:worker_app", factory=True, workers=workers, **run)


def build_app(options: dict[str, Any], table: Any = None) -> Any:
    """The server for `options` (those of `serve`): its router (loading its model) and app."""
    from llmrouter.config import Config
    from llmrouter.router import Router
    from llmrouter.server import create_app
    from llmrouter.server.auth import KeyStore

    table = table if table is not None else Config.load(options["config"])
    router = Router(table)  # after the key check: a refusal costs no model load
    fb = router.config.fallback
    decide_wait = options["decide_wait"]
    if decide_wait is None:
        decide_wait = fb.decide_wait_s if fb.decide_wait_s is not None else 5.0
    policy = fb.with_overrides(deadline_s=options["deadline"], max_retries=options["max_retries"])
    policy = policy.model_copy(update={"decide_wait_s": decide_wait or None})
    store = KeyStore(Path(options["keys"])) if options["keys"] else None
    stats_path = table.dashboard.stats_path(table.router.cache_path, table.path)  # the dashboard's numbers
    return create_app(router, policy=policy, max_body_bytes=int(options["max_body_mb"] * 1024 * 1024), keys=store,
                      stats_path=stats_path)


def worker_app() -> Any:
    """One worker of `serve --workers N` (uvicorn calls this in each worker process)."""
    from llmrouter import log as logmod

    options = json.loads(os.environ[WORKER_ENV])
    logmod.configure(level=os.environ.get("LLMROUTER_LOG_LEVEL") or options["log_level"], stdlib=True)
    return build_app(options)


def _refuse_unshared_limits(table: Any, store: Any, workers: int) -> None:
    """N workers without [state] would each allow a cap or budget in full: refuse, saying what to add."""
    from llmrouter.cli.app import fail

    if table.state is not None:
        return
    p = table.policy
    limits = [name for name, on in (
        ("[budgets] per_key", p.budgets.per_key is not None), ("[budgets] per_tier", bool(p.budgets.per_tier)),
        ("[escalation] max_rate", p.escalation.max_rate is not None),
        ("[escalation] per_surface", bool(p.escalation.per_surface)),
        ("API keys with a budget or rate limit",
         store is not None and any(k.budget_usd or k.rpm or k.tpm for k in store.keys.values())),
    ) if on]
    if limits:
        fail(f"--workers {workers} would give each worker its own {', '.join(limits)}: every cap would be "
             f"allowed {workers} times over. Add `[state] url = \"redis://HOST:6379/0\"` to the table (and "
             "`pip install 'llmrouter[redis]'`) so the workers share them, or serve with --workers 1")


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
