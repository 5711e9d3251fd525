"""Each routing pattern's example table, end to end: the server (uvicorn on loopback), the policy,
the fallback chain and emulated targets on a real socket. The router model is replaced by a
scripted decider: here the policy and the provider paths are under test, not the model."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from llmrouter.config import Config
from llmrouter.types import Verdict
from llmrouter.testing import Behavior
from llmrouter.config import FallbackPolicy
from llmrouter.router import Router
from llmrouter.server import create_app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FAST = FallbackPolicy(deadline_s=5, backoff_base_s=0.01, backoff_cap_s=0.05, max_retries=0)


class Scripted:
    name, model_id = "scripted", "scripted"

    def __init__(self, pick):
        self.pick = pick

    def decide(self, text, *, explain=False):
        scores = self.pick(text)
        return Verdict(route=max(scores, key=scores.get), scores=scores)


def emulated(name: str, emu, **sections: Any) -> Config:
    """The example table with every target pointed at the emulator (same provider API)."""
    data = tomllib.loads((EXAMPLES / f"{name}.toml").read_text())
    for tname, t in data.get("targets", {}).items():
        t["base_url"] = emu.base_url(tname, "anthropic" if t.get("provider") == "anthropic" else "openai")
        t.pop("api_key_env", None)
    data.update(sections)
    data.setdefault("router", {})["cache"] = False
    return Config.from_dict(data, path=str(EXAMPLES / f"{name}.toml"))


@pytest.fixture
def app_for(emu, serve):
    """app_for(example, pick, **sections) -> an httpx client on a server for that table."""
    opened = []

    def make(name: str, pick, **sections: Any) -> tuple[httpx.Client, Router]:
        router = Router(emulated(name, emu, **sections), decider=Scripted(pick))
        ctx = serve(create_app(router, policy=FAST))
        url = ctx.__enter__()
        client = httpx.Client(base_url=url, timeout=10)
        opened.append((ctx, client))
        return client, router

    yield make
    for ctx, client in opened:
        client.close()
        ctx.__exit__(None, None, None)


def chat(client: httpx.Client, text: str, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    return client.post("/v1/chat/completions", headers=headers or {},
                       json={"model": "router", "messages": [{"role": "user", "content": text}], **body})


def test_difficulty_routes_easy_to_small_and_hard_to_frontier(app_for, emu):
    client, _ = app_for("difficulty", lambda t: {"easy": 0.1, "hard": 0.9} if "prove" in t else {"easy": 0.9, "hard": 0.1})
    easy, hard = chat(client, "capital of France?"), chat(client, "prove it")
    assert (easy.headers["x-llmrouter-target"], hard.headers["x-llmrouter-target"]) == ("small", "frontier")
    assert emu.seen("frontier")[0].body["model"] == "claude-sonnet-4-5"  # spoken to in Anthropic's API


def test_task_type_rule_catches_code_before_the_model(app_for, emu):
    client, _ = app_for("task-type", lambda t: {"code": 0.1, "writing": 0.1, "translation": 0.1, "chat": 0.7})
    r = chat(client, "```python\nprint('hi')\n```\nwhy does this fail?")
    assert (r.headers["x-llmrouter-route"], r.headers["x-llmrouter-source"]) == ("code", "rule")
    assert chat(client, "hello!").headers["x-llmrouter-route"] == "chat"


def test_tiers_free_users_stay_standard_and_spend_caps_hold(app_for, emu):
    client, router = app_for("tiers", lambda t: {"standard": 0.2, "premium": 0.8})
    assert chat(client, "analyse this", {"x-llmrouter-tier": "free"}).headers["x-llmrouter-target"] == "mini"
    paid = {"x-llmrouter-tier": "paid", "x-llmrouter-key": "team-42"}
    emu.set_default("frontier", Behavior(text="word " * 2000))  # ~2000 tokens at 8 USD/M a call
    spent = 0
    for _ in range(40):  # bounded: the 0.50 USD key cap is reached well before
        r = chat(client, "analyse this " * 5000, paid)
        if r.headers["x-llmrouter-target"] != "frontier":
            break
        spent += 1
    assert 0 < spent < 40 and r.headers["x-llmrouter-route"] == "standard"
    assert router.policy.ledger.spent("team-42") >= 0.5


def test_specialty_images_only_reach_the_vision_target(app_for, emu):
    client, _ = app_for("specialty", lambda t: {"code": 0.7, "math": 0.1, "vision": 0.1, "general": 0.1})
    msg = [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                          {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]
    r = client.post("/v1/chat/completions", json={"model": "router", "messages": msg})
    assert r.status_code == 200 and r.headers["x-llmrouter-target"] == "eyes"
    math = chat(client, "what is the derivative of x^3?")
    assert (math.headers["x-llmrouter-route"], math.headers["x-llmrouter-target"]) == ("math", "mathematician")


def test_escalation_by_answer_signal_and_surface_floor(app_for, emu):
    client, _ = app_for("escalation", lambda t: {"quick": 0.9, "solid": 0.06, "deep": 0.04})
    emu.set_default("small", Behavior(text="I'm not sure, maybe 42?"))
    r = chat(client, "how many moons?")
    assert r.headers["x-llmrouter-target"] == "mid" and r.headers["x-llmrouter-escalated-from"] == "quick"
    assert [s.name for s in emu.seen()] == ["small", "mid"]
    floor = chat(client, "hi", {"x-llmrouter-surface": "checkout"})
    assert floor.headers["x-llmrouter-route"] in ("solid", "deep")


def test_escalation_cap_queue_answers_429_with_retry_after(app_for, emu):
    client, router = app_for("escalation", lambda t: {"quick": 0.05, "solid": 0.05, "deep": 0.9},
                             escalation={"max_rate": 0.0, "min_requests": 1, "on_cap": "queue", "window_s": 30})
    router.policy.window.record("", True)
    with capture_logs() as logs:
        r = chat(client, "design a global database")
    assert r.status_code == 429 and r.json()["error"]["code"] == "escalation_cap"
    assert 1 <= int(r.headers["retry-after"]) <= 30
    assert any(e["event"] == "alert" and e["kind"] == "escalation_cap" for e in logs)
    assert 'llmrouter_alerts_total{kind="escalation_cap"} 1' in client.get("/metrics").text


def test_failover_and_stickiness(app_for, emu):
    client, _ = app_for("failover", lambda t: {"general": 0.2, "private": 0.8} if "memo" in t else {"general": 0.9, "private": 0.1})
    emu.set_default("openai", Behavior(status=503))
    s = {"x-llmrouter-session": "conv-1"}
    first = chat(client, "hello", s)
    assert first.headers["x-llmrouter-target"] == "anthropic" and "openai" in first.headers["x-llmrouter-fallbacks"]
    second = chat(client, "now about the memo", s)  # the model would say private: the session stays
    assert (second.headers["x-llmrouter-route"], second.headers["x-llmrouter-source"]) == ("general", "rule")
    assert chat(client, "now about the memo").headers["x-llmrouter-route"] == "private"


def test_metrics_per_route_and_feedback(app_for, emu):
    client, _ = app_for("escalation", lambda t: {"quick": 0.9, "solid": 0.06, "deep": 0.04})
    r = chat(client, "hello", {"x-llmrouter-surface": "checkout"})
    chat(client, "hello", {"x-llmrouter-surface": "made-up-surface"})
    rid = r.json()["id"]
    ok = client.post("/v1/feedback", json={"id": rid, "score": 0.8})
    assert ok.status_code == 202 and ok.json()["route"] == r.headers["x-llmrouter-route"]
    assert client.post("/v1/feedback", json={"id": "chatcmpl-nope", "score": 1}).status_code == 404
    assert client.post("/v1/feedback", json={"id": rid, "score": 7}).status_code == 400
    assert client.post("/v1/feedback", content=b"{").status_code == 400
    text = client.get("/metrics").text
    route = r.headers["x-llmrouter-route"]
    assert f'llmrouter_route_requests_total{{route="{route}",source="model",surface="checkout"}} 1' in text
    assert 'surface="other"' in text and "made-up-surface" not in text  # bounded label values
    target = r.headers["x-llmrouter-target"]
    assert f'llmrouter_route_feedback_score_sum{{route="{route}",surface="checkout",target="{target}"}} 0.8' in text
    assert "llmrouter_route_latency_seconds_bucket" in text and "llmrouter_route_cost_usd_total" in text
