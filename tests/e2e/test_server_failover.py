"""Failover as a client of `llmrouter serve` sees it: a stream cut mid-answer arrives whole, with
one finish_reason, usage summed over both targets and the continuation named in its last chunk;
a hedged answer says so in its headers; /metrics counts both."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import structlog

from llmrouter.config import FallbackPolicy
from llmrouter.server import create_app
from llmrouter.testing import Behavior, FakeRouter, fleet

TEXT = " ".join(f"w{i}" for i in range(40))
POLICY = FallbackPolicy(deadline_s=5, backoff_base_s=0.01, max_retries=0, hedge_after_ms=200)
ASK = {"model": "router", "messages": [{"role": "user", "content": "count"}]}


@pytest.fixture
def server(emu, serve):
    router = FakeRouter(fleet(emu, {"main": ["a", "claude"]}))
    with serve(create_app(router, policy=POLICY)) as url:
        with httpx.Client(base_url=url, timeout=10) as client:
            yield client


def events(text: str) -> list[Any]:
    blocks = [b.removeprefix("data: ") for b in text.strip().split("\n\n")]
    return [b if b == "[DONE]" else json.loads(b) for b in blocks]


def metric(client: httpx.Client, line_start: str) -> float:
    lines = [ln for ln in client.get("/metrics").text.splitlines() if ln.startswith(line_start)]
    return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0


def test_a_stream_cut_mid_answer_reaches_the_client_whole(server, emu):
    emu.set_default("a", Behavior(text=TEXT, cut_after=15))
    emu.set_default("claude", Behavior(text=TEXT))
    body = {**ASK, "stream": True, "stream_options": {"include_usage": True}}
    with structlog.testing.capture_logs() as logs:
        r = server.post("/v1/chat/completions", json=body)
    assert r.status_code == 200 and r.headers["x-llmrouter-target"] == "a"  # headers go out first
    got = events(r.text)
    assert got[-1] == "[DONE]" and not any("error" in e for e in got[:-1])
    chunks = [e for e in got[:-1] if e["choices"]]
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == TEXT
    finishes = [c for c in chunks if c["choices"][0]["finish_reason"]]
    assert len(finishes) == 1 and finishes[0]["llmrouter"] == {"continued_by": "claude"}
    assert sum(1 for c in chunks if "role" in c["choices"][0]["delta"]) == 1
    usage = got[-2]["usage"]
    assert usage["completion_tokens"] > 25  # claude's 25 words and a's estimated share
    done = [e for e in logs if e["event"] == "completion"]
    assert done[0]["continued_by"] == "claude" and done[0]["target"] == "claude"
    assert [e["cut"] for e in logs if e["event"] == "stream_continued"] == ["a"]
    assert metric(server, 'llmrouter_stream_continuations_total{route="main",target="claude"}') == 1


def test_a_hedged_answer_says_so_and_is_counted(server, emu):
    emu.set_default("a", Behavior(latency_s=3))
    r = server.post("/v1/chat/completions", json=ASK)
    assert r.status_code == 200 and r.headers["x-llmrouter-target"] == "claude"
    assert r.headers["x-llmrouter-hedged"] == "won" and "x-llmrouter-fallbacks" not in r.headers
    assert metric(server, 'llmrouter_hedges_total{outcome="sent"}') == 1
    assert metric(server, 'llmrouter_hedges_total{outcome="won"}') == 1
    assert metric(server, 'llmrouter_attempts_total{outcome="cancelled",target="a"}') == 1
