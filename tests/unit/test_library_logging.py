"""Used as a library, llmrouter writes nothing to stdout, and logs only where the application
turns logging on (a fresh interpreter each: logging setup is process-wide)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import logging, sys
from llmrouter.config import Config
from llmrouter.router import Router
from llmrouter.testing.fakes import FixedDecider
cfg = Config.from_dict({"router": {"cache": False}, "targets": {"t": {"provider": "local", "model": "m"}},
                        "routes": [{"name": "a", "description": "A"}, {"name": "b", "description": "B"}]})
if "--app-logs" in sys.argv:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
d = Router(cfg, decider=FixedDecider("b")).decide("hi sk-live-ABCDEFGHIJKLMNOPQRST")
print("route", d.route)
"""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=60)


def test_a_library_decision_prints_nothing_by_itself():
    r = run()
    assert r.returncode == 0, r.stderr
    assert r.stdout == "route b\n" and r.stderr == ""


def test_an_application_that_turns_logging_on_gets_redacted_events():
    r = run("--app-logs")
    assert r.returncode == 0 and r.stdout == "route b\n"
    assert "llmrouter" in r.stderr and '"event": "decision"' in r.stderr and '"route": "b"' in r.stderr
    assert "sk-live" not in r.stderr
