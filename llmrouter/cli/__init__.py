"""The `llmrouter` command line: one module per command group, one function per command, its
docstring's first line is its help.

    app.py      the Typer app and its sub-apps; errors become a message and exit code 1
    route.py    route                models.py   models list|pull|rm     routes.py   routes check|show
    serve.py    serve                chat.py     chat                    bench.py    bench
    stats.py    stats                replay.py   replay                  quality.py  eval, tune
    keys.py     keys create|list|revoke
"""

from llmrouter.cli import bench, chat, keys, models, quality, replay, route, routes, serve, stats  # noqa: F401  register
from llmrouter.cli.app import app, fail, main

__all__ = ["app", "fail", "main"]
