"""`llmrouter chat` in-process and `llmrouter serve` as a real process, on the real router model,
with every route answered by emulated targets."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
import sys
from pathlib import Path

import httpx
import pytest
from fixtures_providers import free_port, wait_healthy
from typer.testing import CliRunner

from llmrouter.cli import app
from llmrouter.config import Config
from llmrouter.testing import Behavior, Emulator

pytestmark = pytest.mark.model
ROOT = Path(__file__).resolve().parents[2]


def routes_file(emu: Emulator, tmp_path: Path) -> Path:
    data = Config.load().to_dict()
    data["router"]["cache"] = False
    data["targets"] = {n: {"provider": "openai", "model": f"{n}-model", "base_url": emu.base_url(n)} for n in "ab"}
    for route in data["routes"]:
        route["targets"] = ["a", "b"]
    import tomli_w

    path = tmp_path / "routes.toml"
    path.write_text(tomli_w.dumps(data))
    return path


def test_chat_streams_the_answer_and_says_where_it_went(emu, tmp_path):
    emu.script("a", Behavior(status=401))
    r = CliRunner().invoke(app,
                           ["chat", "-c", str(routes_file(emu, tmp_path)), "Explain TCP slow start"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == "b says: Explain TCP slow start"
    assert "route=" in r.stderr and "-> b" in r.stderr and "a: HTTP 401" in r.stderr
    assert "decision" not in r.stderr and "completion" not in r.stderr  # no INFO log lines over the answer


def test_chat_logs_its_decisions_when_asked(emu, tmp_path):
    r = CliRunner().invoke(app, ["-v", "chat", "-c", str(routes_file(emu, tmp_path)), "Explain TCP slow start"])
    assert r.exit_code == 0, r.output
    assert "decision" in r.stderr and "completion" in r.stderr


@pytest.mark.parametrize("retries, answers", [(None, "a"), (0, "b")])
def test_chat_follows_the_tables_fallback_settings(emu, tmp_path, retries, answers):
    emu.script("a", Behavior(status=503))  # once: a retry of `a` succeeds
    path = routes_file(emu, tmp_path)
    if retries is not None:
        path.write_text(path.read_text() + f"\n[fallback]\nmax_retries = {retries}\nbackoff_base_s = 0\n")
    r = CliRunner().invoke(app, ["chat", "-c", str(path), "Explain TCP slow start"])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == f"{answers} says: Explain TCP slow start"


def test_chat_reports_a_failure_cleanly(emu, tmp_path):
    emu.set_default("a", Behavior(status=400))
    r = CliRunner().invoke(app,
                           ["chat", "-c", str(routes_file(emu, tmp_path)), "hello"])
    assert r.exit_code == 1 and "error:" in r.stderr and "HTTP 400" in r.stderr and "Traceback" not in r.output


@contextmanager
def serving(emu: Emulator, tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[str, dict[str, str]]]:
    """`llmrouter serve` as a process until the block ends: (its URL, {"stderr": what it logged})."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from llmrouter.cli import main; main()", "serve",
                             "-c", str(routes_file(emu, tmp_path)), "--port", str(port)],
                            cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    logged: dict[str, str] = {}
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(proc, url, limit_s=30)
        yield url, logged
    finally:
        proc.terminate()
        logged["stderr"] = proc.communicate(timeout=10)[1].decode()


def test_serve_answers_openai_clients(emu, tmp_path):
    with serving(emu, tmp_path, {"LLMROUTER_LOG_LEVEL": "error"}) as (url, _):
        r = httpx.post(f"{url}/v1/chat/completions", timeout=30,
                       json={"model": "router", "messages": [{"role": "user", "content": "Write a limerick"}]})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "a says: Write a limerick"
        source, decider = r.headers["x-llmrouter-source"], r.headers["x-llmrouter-decider"]
        assert (source, decider) in {("model", "fitted:exit@24"), ("cheap", "cheap:chars")}


def test_serve_logs_json_through_llmrouter_without_request_text(emu, tmp_path):
    secret, text = "sk-live-ABCDEFGHIJKLMNOPQRST", "the quarterly numbers nobody may see"
    with serving(emu, tmp_path, {"LLMROUTER_LOG_FORMAT": "json", "LLMROUTER_LOG_LEVEL": "info"}) as (url, logged):
        r = httpx.post(f"{url}/v1/chat/completions", timeout=30,
                       json={"model": "router", "messages": [{"role": "user", "content": f"{text} {secret}"}]})
        assert r.status_code == 200
    err = logged["stderr"]
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]  # every line JSON
    assert {"decision", "completion"} <= {e.get("event") for e in lines}
    assert any(e.get("logger") == "uvicorn.access" for e in lines) and any(e.get("logger") == "uvicorn.error" for e in lines)
    assert text not in err and secret not in err


def test_serve_keeps_the_dashboards_numbers_beside_the_cache_across_restarts(emu, tmp_path):
    for answered in (1, 2):
        with serving(emu, tmp_path, {"LLMROUTER_LOG_LEVEL": "error"}) as (url, _):
            r = httpx.post(f"{url}/v1/chat/completions", timeout=30,
                           json={"model": "router", "messages": [{"role": "user", "content": "Write a limerick"}]})
            assert r.status_code == 200
            totals = httpx.get(f"{url}/v1/stats", params={"window": "all"}, timeout=10).json()["totals"]
            assert totals["answers"] == answered
    assert (Path(os.environ["LLMROUTER_HOME"]) / "stats.sqlite").is_file()
