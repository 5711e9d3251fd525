"""What the server writes to its log: structlog lines for llmrouter's events and for uvicorn's own
(access and errors), redacted, and never the request's text, even when a request fails inside."""

from __future__ import annotations

import io
import json
import threading
import time
from typing import Any

import pytest
import uvicorn
from fixtures_providers import fleet, free_port

from llmrouter import log as logmod
from llmrouter.policy import NoPolicy
from llmrouter.router import Router
from llmrouter.server import create_app
from llmrouter.testing.fakes import FixedDecider

SECRET = "sk-live-ABCDEFGHIJKLMNOPQRST"
TEXT = "my private question about the merger"


class Boom(NoPolicy):
    """A policy with a bug that quotes the request in its error."""

    def before(self, request: Any) -> Any:
        if "crash" in request.text:
            raise RuntimeError(f"cannot route {request.text!r}")
        return None


@pytest.fixture
def logged(emu):
    buf = io.StringIO()
    logmod.configure(fmt="json", level="info", stream=buf, stdlib=True)
    router = Router(fleet(emu, {"main": ["a"]}), decider=FixedDecider("main"), policy=Boom(), cache=None)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(router), host="127.0.0.1", port=port, log_config=None,
                                           log_level="info"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", buf
    finally:
        server.should_exit = True
        thread.join(10)
        logmod.configure()  # back to the default sink for the next tests
        import logging

        logging.getLogger().handlers = []


def test_the_log_holds_neither_secrets_nor_request_text(logged):
    import httpx

    url, buf = logged
    body = {"model": "router", "messages": [{"role": "user", "content": f"{TEXT} {SECRET}"}]}
    ok = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=10)
    crash = httpx.post(f"{url}/v1/chat/completions", timeout=10,
                       json={"model": "router", "messages": [{"role": "user", "content": f"crash {TEXT} {SECRET}"}]})
    assert ok.status_code == 200 and crash.status_code == 500
    assert TEXT not in crash.text and SECRET not in crash.text  # nor in the answer to the client
    time.sleep(0.2)
    lines = [json.loads(line) for line in buf.getvalue().splitlines() if line.strip()]  # every line is JSON
    events = {e.get("event") for e in lines}
    assert "server_error" in events and "completion" in events
    failed = next(e for e in lines if e.get("event") == "server_error")
    assert failed["error_type"] == "RuntimeError" and any("before" in f for f in failed["frames"])
    access = [e for e in lines if e.get("logger") == "uvicorn.access"]
    assert len(access) == 2 and all("/v1/chat/completions" in e["event"] for e in access)  # uvicorn's, as JSON
    assert TEXT not in buf.getvalue() and SECRET not in buf.getvalue()
