"""The remote decider against the emulator on 127.0.0.1: same prompt, route enum, validated answer."""

import json

import pytest

from llmrouter.config import Config
from llmrouter.testing import Behavior
from llmrouter.router import Router


def remote_router(emu, content_view=False, **remote):
    data = Config.load().to_dict()
    data["router"]["cache"] = False
    data["router"]["content_view"] = content_view
    data["router"]["remote"] = {"base_url": emu.base_url("engine"), "model": "router-llm",
                                "timeout_s": 1.0, **remote}
    return Router(Config.from_dict(data))


def test_sends_the_router_prompt_and_the_enum(emu):
    emu.set_default("engine", Behavior(text='{"route": "code"}'))
    d = remote_router(emu).decide("Write a Rust function that parses a date")
    assert (d.route, d.source, d.decider) == ("code", "model", "remote")
    body = emu.seen("engine")[-1].body
    assert body["model"] == "router-llm" and body["temperature"] == 0
    schema = body["response_format"]["json_schema"]["schema"]
    assert json.dumps(schema).count('"code"') >= 1 and "general_qa" in json.dumps(schema)
    msgs = body["messages"]
    assert msgs[0]["role"] == "system" and "- code:" in msgs[0]["content"]
    assert msgs[-1] == {"role": "user", "content": "Write a Rust function that parses a date"}


def test_the_engine_reads_the_content_view_where_the_table_asks(emu):
    emu.set_default("engine", Behavior(text='{"route": "code"}'))
    text = "[priority: top tier] [difficulty: extreme]\nWrite a Rust function that parses a date"
    remote_router(emu).decide(text)
    assert emu.seen("engine")[-1].body["messages"][-1]["content"] == text
    remote_router(emu, content_view=True).decide(text)
    assert emu.seen("engine")[-1].body["messages"][-1]["content"] == "Write a Rust function that parses a date"


@pytest.mark.parametrize("behavior, why", [
    (Behavior(text='{"route": "frontier"}'), "unknown route 'frontier'"),
    (Behavior(text="code, definitely"), "unknown route"),
    (Behavior(status=500), "HTTP 500"),
    (Behavior(hang=True), "timed out"),
    (Behavior(reset=True), "unreachable"),
])
def test_a_bad_or_dead_engine_gives_the_default_route(emu, behavior, why):
    emu.set_default("engine", behavior)
    d = remote_router(emu, timeout_s=0.5).decide("hello there")
    assert d.source == "default" and d.route == "general_qa"
    assert why in d.reason


def test_key_comes_from_the_environment(emu, monkeypatch):
    monkeypatch.setenv("ENGINE_KEY", "sk-test-secret-123456")
    emu.set_default("engine", Behavior(text='{"route": "chat"}'))
    assert remote_router(emu, api_key_env="ENGINE_KEY").decide("hi").route == "chat"
    assert emu.seen("engine")[-1].headers.get("authorization") == "Bearer sk-test-secret-123456"


def test_logprobs_become_scores():
    from llmrouter.deciders.remote import RemoteDecider
    from llmrouter.prompts import RouterPrompt

    cfg = Config.load()
    d = RemoteDecider(cfg.router.model_copy(update={}).remote or _remote(), cfg.router, cfg.table,
                      RouterPrompt.load("router-v1"))
    toks = [{"token": t} for t in ['{"', 'route', '":', ' "']]
    toks.append({"token": "code", "top_logprobs": [{"token": "code", "logprob": -0.1},
                                                    {"token": "chat", "logprob": -2.5},
                                                    {"token": "zzz", "logprob": -1.0}]})
    s = d.scores({"logprobs": {"content": toks}}, "code")
    assert set(s) == {"code", "chat"} and s["code"] > 0.9 and sum(s.values()) == pytest.approx(1.0)
    assert d.scores({}, "code") == {}


def _remote():
    from llmrouter.config import RemoteDeciderSettings

    return RemoteDeciderSettings(base_url="http://127.0.0.1:9/v1", model="m")
