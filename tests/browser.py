"""A real headless browser for tests: Debian's chromium, driven over the Chrome DevTools Protocol
with a small synchronous websocket client. It records every console error, uncaught exception and
browser log error of the page it drives."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from fixtures_providers import free_port

CHROMIUM_MISSING = ("chromium is not installed: the dashboard's browser test needs Debian's chromium. "
                    "Run `scripts/ensure-chromium.sh` (or `sudo apt-get install chromium`), then run the tests again")


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(CHROMIUM_MISSING, pytrace=False)


class Page:
    """One browser tab over CDP: send commands, collect the errors it reports."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.errors: list[str] = []
        for domain in ("Runtime", "Log", "Page"):
            self.send(f"{domain}.enable")

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))
            self._event(msg)

    def _event(self, msg: dict[str, Any]) -> None:
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
        elif method == "Runtime.exceptionThrown":
            d = p["exceptionDetails"]
            self.errors.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
        elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
            self.errors.append(f"log: {p['entry']['text']} {p['entry'].get('url', '')}")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, limit_s: float = 30.0) -> Any:
        """Evaluate `expression` until it is truthy (a bound on a hang, not a timing assertion)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit_s:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"the page never satisfied {expression!r}; errors so far: {self.errors}")

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=True)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))


@contextmanager
def chromium(width: int = 1400, height: int = 1800) -> Iterator[Page]:
    """A headless chromium on a free loopback port, with one blank tab."""
    binary = chromium_binary()
    port = free_port()
    # chromium's helpers may still write the profile as it exits: its removal must not fail the test
    with tempfile.TemporaryDirectory(prefix="llmrouter-chromium-", ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--disable-extensions", f"--remote-debugging-port={port}",
             "--remote-debugging-address=127.0.0.1", f"--user-data-dir={profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            page = Page(_page_socket(port, proc))
            try:
                yield page
            finally:
                page.ws.close()
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """End the chromium this helper started, with its helper processes (its own process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(10)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def _page_socket(port: int, proc: subprocess.Popen[bytes]) -> str:
    t0 = time.monotonic()
    while time.monotonic() - t0 < 30:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {proc.returncode} before its DevTools port opened")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=2) as r:
                tabs = [t for t in json.loads(r.read()) if t.get("type") == "page"]
            if tabs:
                return str(tabs[0]["webSocketDebuggerUrl"])
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("chromium's DevTools port did not open within 30 s")
