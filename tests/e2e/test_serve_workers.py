"""`llmrouter serve --workers N`: refused without [state] when the table or keys have caps;
with [state], N worker processes (each its own model) spend one key budget between them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import tomli_w
from fixtures_providers import free_port, wait_healthy
from typer.testing import CliRunner

from llmrouter.cli import app
from llmrouter.config import Config
from llmrouter.server.auth import KeyStore
from llmrouter.testing import Behavior, Emulator

ROOT = Path(__file__).resolve().parents[2]


def table(emu: Emulator, tmp_path: Path, **sections: object) -> Path:
    data = Config.load().to_dict()
    data["router"]["cache"] = False
    data["targets"] = {"a": {"provider": "openai", "model": "a-model", "base_url": emu.base_url("a"),
                             "output_price": 1_000_000.0}}  # $1 a token
    for route in data["routes"]:
        route["targets"] = ["a"]
    path = tmp_path / "routes.toml"
    path.write_text(tomli_w.dumps({**data, **sections}))
    return path


def test_workers_are_refused_without_state_when_a_budget_would_be_multiplied(emu, tmp_path):
    path = table(emu, tmp_path, budgets={"per_key": 5.0})
    r = CliRunner().invoke(app, ["serve", "-c", str(path), "--workers", "2"])
    assert r.exit_code == 1 and "[budgets] per_key" in r.stderr and "[state] url" in r.stderr


def test_workers_are_refused_without_state_when_a_key_has_a_budget(emu, tmp_path):
    keys = KeyStore(tmp_path / "keys.json")
    keys.create("acme", budget_usd=5.0)
    r = CliRunner().invoke(app, ["serve", "-c", str(table(emu, tmp_path)), "--keys", str(keys.path), "--workers", "3"])
    assert r.exit_code == 1 and "API keys with a budget" in r.stderr and "[state] url" in r.stderr


@pytest.mark.model
def test_two_workers_spend_one_key_budget(emu, redis_server, tmp_path):
    emu.set_default("a", Behavior(text="one two three"))  # $3 an answer
    keys = KeyStore(tmp_path / "keys.json")
    secret, record = keys.create("acme", budget_usd=10.0)
    path = table(emu, tmp_path, state={"url": redis_server.url})
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from llmrouter.cli import main; main()", "serve", "-c", str(path),
                             "--keys", str(keys.path), "--port", str(port), "--workers", "2"],
                            cwd=ROOT, env={**os.environ, "LLMROUTER_LOG_LEVEL": "warning"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url, codes = f"http://127.0.0.1:{port}", []
    try:
        wait_healthy(proc, url)
        for _ in range(8):  # a new connection each: the kernel spreads them over the workers
            r = httpx.post(f"{url}/v1/chat/completions", timeout=30, headers={"authorization": f"Bearer {secret}"},
                           json={"model": "router", "messages": [{"role": "user", "content": "hello"}]})
            codes.append(r.status_code)
        workers = {c["name"] for c in redis_server.client().client_list() if c["name"].startswith("llmrouter-")}
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert len(workers) == 2 and codes == [200] * 4 + [429] * 4
    assert int(redis_server.client().get(f"llmr:key:spent_micro_usd:{record.id}")) == 12_000_000
