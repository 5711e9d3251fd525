"""The OpenAI-compatible HTTP server.

    app.py      create_app, the handlers, and the AppState they share
    wire.py     request bodies and headers in; JSON, SSE and OpenAI-style errors out
    metrics.py  the one metrics registry, rendered at /metrics
"""

from llmrouter.server.app import AppState, create_app

__all__ = ["AppState", "create_app"]
