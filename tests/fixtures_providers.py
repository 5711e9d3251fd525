"""Fixtures for providers, fallback and the server: the emulator on a real socket, fleets of
emulated targets, a stand-in router for tests that do not care which route is picked, and a
server runner (uvicorn in a thread on a free port)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from llmrouter.config import Config
from llmrouter.emulator import Emulator
from llmrouter.types import Decision, Request

__all__ = ["emulator_server", "emu", "fake_router", "serve"]  # the fixtures conftest.py re-exports


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[Emulator]:
    emu = Emulator().start()
    yield emu
    emu.stop()


@pytest.fixture
def emu(emulator_server: Emulator) -> Iterator[Emulator]:
    """The session's emulator, with scripts and seen requests cleared for this test."""
    emulator_server.reset()
    yield emulator_server
    emulator_server.reset()


def fleet(emu: Emulator, routes: dict[str, list[str]], **overrides: dict[str, Any]) -> Config:
    """A Config whose targets are emulated: names starting with 'claude' speak Anthropic,
    'vision' ones accept images, everything else is OpenAI-compatible."""
    names = {t for ts in routes.values() for t in ts} | set(overrides)
    targets: dict[str, dict[str, Any]] = {}
    for n in sorted(names):
        api = "anthropic" if n.startswith("claude") else "openai"
        targets[n] = {"provider": api, "model": f"{n}-model", "base_url": emu.base_url(n, api),
                      "vision": n.startswith("vision"), **overrides.get(n, {})}
    return Config.from_dict({
        "router": {"default_route": next(iter(routes)), "cache": False},
        "targets": targets,
        "routes": [{"name": r, "description": f"requests for {r}", "targets": ts} for r, ts in routes.items()],
    })


class FakeRouter:
    """Stands in for Router where the route does not matter: picks `metadata["route"]` or the
    default route, and counts its decisions."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.decisions = 0

    def decide(self, request: Any) -> Decision:
        req = Request.of(request)
        self.decisions += 1
        route = req.metadata.get("route") or self.config.table.default_route
        return Decision(route=route, source="rule", confidence=1.0, reason="test router")


@pytest.fixture
def fake_router(emu: Emulator) -> FakeRouter:
    """Routes 'main' -> a, b; 'claude' -> claude, a; 'vision' -> text, vision."""
    return FakeRouter(fleet(emu, {"main": ["a", "b"], "claude": ["claude", "a"], "vision": ["text", "vision"]}))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        if time.monotonic() - t0 > 10 or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def serve() -> Any:
    """serve(app) -> a context manager yielding the running app's base URL."""
    return running
