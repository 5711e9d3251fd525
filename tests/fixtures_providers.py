"""Fixtures for providers, fallback and the server: the emulator on a real socket (llmrouter.testing),
fleets of emulated targets, a stand-in router for tests that do not care which route is picked, and
a server runner (uvicorn in a thread on a free port)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from llmrouter.testing import Emulator, FakeRouter, fleet

__all__ = ["emulator_server", "emu", "fake_router", "serve", "FakeRouter", "fleet", "wait_healthy"]  # conftest.py re-exports


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


def wait_healthy(proc: Any, url: str, limit_s: float = 60) -> None:
    """Wait until the `llmrouter serve` process `proc` answers {url}/healthz; its stderr if it dies."""
    import httpx

    t0 = time.monotonic()
    while True:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            assert time.monotonic() - t0 < limit_s, f"llmrouter serve did not come up within {limit_s:g} s"
            time.sleep(0.1)
