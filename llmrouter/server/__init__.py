"""The OpenAI-compatible HTTP server.

    app.py      create_app, the handlers, and the AppState they share
    wire.py     request bodies and headers in; JSON, SSE and OpenAI-style errors out
    metrics.py  the one metrics registry, rendered at /metrics
    dashboard.py         /dashboard (static/), /v1/stats and /v1/reports
    stats_store.py       the dashboard's aggregates in SQLite (stats_recorder.py fills it, stats_view.py reads it)
"""

from llmrouter.server.app import AppState, create_app

__all__ = ["AppState", "create_app"]
