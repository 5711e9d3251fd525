"""The OpenAI-compatible server over real sockets: uvicorn in a thread, emulated targets, httpx
as the client. Bad input must always get a clear 4xx in OpenAI's error shape."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmrouter.testing import Behavior
from llmrouter.config import FallbackPolicy
from llmrouter.server import create_app

POLICY = FallbackPolicy(deadline_s=5, backoff_base_s=0.01, backoff_cap_s=0.05, max_retries=1)
HELLO = {"model": "router", "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture
def server(fake_router, serve):
    with serve(create_app(fake_router, policy=POLICY, max_body_bytes=64 * 1024)) as url:
        with httpx.Client(base_url=url, timeout=10) as client:
            yield client


def sse_events(text: str) -> list[Any]:
    out = []
    for block in text.strip().split("\n\n"):
        data = block.removeprefix("data: ")
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


def error_of(r: httpx.Response) -> dict[str, Any]:
    body = r.json()
    assert set(body) == {"error"} and {"message", "type", "code"} <= set(body["error"])
    return body["error"]


def test_a_routed_answer_with_its_routing_metadata(server, emu):
    r = server.post("/v1/chat/completions", json=HELLO)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == "a says: hello there"
    assert body["choices"][0]["finish_reason"] == "stop" and body["usage"]["completion_tokens"] == 4
    h = r.headers
    assert (h["x-llmrouter-route"], h["x-llmrouter-target"], h["x-llmrouter-source"]) == ("main", "a", "rule")
    assert h["x-llmrouter-attempts"] == "1" and float(h["x-llmrouter-confidence"]) == 1.0
    assert emu.seen("a")[0].body["model"] == "a-model"


def test_the_fallback_is_reported_in_headers(server, emu):
    emu.set_default("a", Behavior(status=500))
    r = server.post("/v1/chat/completions", json=HELLO)
    assert r.status_code == 200 and r.headers["x-llmrouter-target"] == "b"
    assert r.headers["x-llmrouter-attempts"] == "3" and "a: HTTP 500" in r.headers["x-llmrouter-fallbacks"]


def test_streaming_sends_chunks_then_done(server):
    with server.stream("POST", "/v1/chat/completions",
                       json={**HELLO, "stream": True, "stream_options": {"include_usage": True}}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["x-llmrouter-target"] == "a"
        events = sse_events(r.read().decode())
    assert events[-1] == "[DONE]" and events[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1] if e["choices"])
    assert text == "a says: hello there"
    assert events[-2]["usage"]["completion_tokens"] == 4


def test_a_stream_cut_mid_answer_ends_with_an_error_event_and_no_done(server, emu):
    emu.set_default("a", Behavior(cut_after=2))
    with server.stream("POST", "/v1/chat/completions", json={**HELLO, "stream": True}) as r:
        assert r.status_code == 200
        events = sse_events(r.read().decode())
    assert "[DONE]" not in events and events[-1]["error"]["code"] == "stream_interrupted"
    assert not any(e.get("choices") and e["choices"][0]["finish_reason"] for e in events[:-1])


def test_all_targets_down_is_a_503_before_any_stream_starts(server, emu):
    emu.set_default("a", Behavior(status=503, retry_after=30))
    emu.set_default("b", Behavior(status=500))
    for stream in (False, True):
        r = server.post("/v1/chat/completions", json={**HELLO, "stream": stream})
        assert r.status_code == 503 and error_of(r)["code"] == "all_targets_failed"
        assert "a: HTTP 503" in error_of(r)["message"] and "b: HTTP 500" in error_of(r)["message"]


def test_images_go_to_a_vision_target_and_tool_messages_pass_through(server, emu):
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_9", "type": "function", "function": {"name": "look", "arguments": "{\"zoom\": 2}"}}]},
        {"role": "tool", "tool_call_id": "call_9", "content": "a cat"},
        {"role": "user", "content": "so?"},
    ]
    r = server.post("/v1/chat/completions", json={"model": "router", "messages": messages,
                                                  "metadata": {"route": "vision"}, "tool_choice": "auto",
                                                  "tools": [{"type": "function", "function": {"name": "look"}}]})
    assert r.status_code == 200 and r.headers["x-llmrouter-target"] == "vision"
    assert "text-only" in r.headers["x-llmrouter-fallbacks"] and not emu.seen("text")
    sent = emu.seen("vision")[0].body
    assert sent["messages"] == messages and sent["tool_choice"] == "auto" and sent["tools"][0]["function"]["name"] == "look"


def test_tool_calls_come_back_unchanged(server, emu):
    emu.set_default("a", Behavior(tool_call={"name": "get_time", "arguments": '{"tz": "UTC"}'}))
    r = server.post("/v1/chat/completions", json=HELLO)
    msg = r.json()["choices"][0]
    assert msg["finish_reason"] == "tool_calls" and msg["message"]["content"] is None
    assert msg["message"]["tool_calls"][0]["function"] == {"name": "get_time", "arguments": '{"tz": "UTC"}'}


def test_a_concrete_model_bypasses_routing(server, emu, fake_router):
    r = server.post("/v1/chat/completions", json={**HELLO, "model": "b"})
    assert r.status_code == 200 and r.headers["x-llmrouter-target"] == "b" and r.headers["x-llmrouter-source"] == "bypass"
    r = server.post("/v1/chat/completions", json={**HELLO, "model": "claude-model"})
    assert r.headers["x-llmrouter-target"] == "claude" and fake_router.decisions == 0


@pytest.mark.parametrize("payload,status,code", [
    (b"{not json", 400, "invalid_json"),
    (b"\xff\xfe{}", 400, "invalid_json"),
    (b"[1, 2]", 400, "invalid_json"),
    (b'{"model": "router", "messages": []}', 400, "invalid_request"),
    (b'{"model": "router"}', 400, "invalid_request"),
    (b'{"model": "router", "messages": "hello"}', 400, "invalid_request"),
    (b'{"model": "router", "messages": [{"role": "robot", "content": "hi"}]}', 400, "invalid_request"),
    (b'{"model": "router", "messages": [{"role": "user", "content": 42}]}', 400, "invalid_request"),
    (b'{"model": "router", "messages": [{"role": "user", "content": "\\ud800"}]}', 400, "invalid_encoding"),
    (b'{"model": "router", "messages": [{"role": "user", "content": "hi"}], "user": "\\udfff"}', 400, "invalid_encoding"),
    (b'{"model": "router", "messages": [{"role": "user", "content": "hi"}], "temperature": "hot"}', 400, "invalid_request"),
    (b'{"model": "router", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}', 400, "invalid_request"),
    (b'{"model": "router", "messages": [{"role": "user", "content": "hi"}], "n": 3}', 400, "invalid_request"),
    (b'{"model": 7, "messages": [{"role": "user", "content": "hi"}]}', 400, "invalid_request"),
    (b'{"model": "router", "messages": [{"role": "user", "content": "hi"}], "seed": NaN}', 400, "invalid_json"),
    (b'{"model": "gpt-99", "messages": [{"role": "user", "content": "hi"}]}', 404, "model_not_found"),
    (b'{"model": "router:nope", "messages": [{"role": "user", "content": "hi"}]}', 404, "model_not_found"),
    (b'{"model": "router", "messages": [{"role": "user", "content": "hi"}], "base_url": "http://169.254.169.254"}',
     400, "unsupported_parameter"),
    (b'{"model": "router", "messages": [{"role": "user", "content": "hi"}], "api_key": "sk-mine"}',
     400, "unsupported_parameter"),
    # once 500s: a tool whose function is not an object, and a body nested past the parser's depth
    (b'{"model": "router", "messages": [{"role": "user", "content": "hi"}], '
     b'"tools": [{"type": "function", "function": "oops"}]}', 400, "invalid_request"),
    (b'{"model": "router", "messages": [{"role": "user", "content": "hi"}], '
     b'"tools": [{"type": "function", "function": ["a", "b"]}]}', 400, "invalid_request"),
    (b'{"model": "router", "messages": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", 400, "invalid_json"),
    (b'{"model": "router", "messages": [{"role": "user", "content": "hi"}], "metadata": '
     + b'{"a": ' * 70 + b"1" + b"}" * 70 + b"}", 400, "invalid_json"),
])
def test_bad_requests_get_a_clear_openai_style_4xx(server, emu, payload, status, code):
    r = server.post("/v1/chat/completions", content=payload, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert error_of(r)["code"] == code and error_of(r)["type"] == "invalid_request_error"
    assert not emu.seen()


def test_deeply_nested_feedback_is_a_400_and_the_server_still_answers(server):
    r = server.post("/v1/feedback", content=b"[" * 30_000 + b"]" * 30_000, headers={"content-type": "application/json"})
    assert r.status_code == 400 and error_of(r)["code"] == "invalid_json"
    assert server.get("/healthz").status_code == 200


def test_oversize_bodies_are_refused_with_413(server, emu):
    big = {**HELLO, "messages": [{"role": "user", "content": "x" * 70_000}]}
    r = server.post("/v1/chat/completions", json=big)
    assert r.status_code == 413 and error_of(r)["code"] == "body_too_large"

    def chunked():  # no content-length: the limit must hold while reading
        yield b'{"model": "router", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"y" * 1000
        yield b'"}]}'

    r = server.post("/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and not emu.seen()


def test_unknown_body_fields_never_reach_a_target(server, emu):
    r = server.post("/v1/chat/completions", json={**HELLO, "temperature": 0.5, "api_base_override": "http://evil"})
    assert r.status_code == 200
    sent = emu.seen("a")[0].body
    assert sent["temperature"] == 0.5 and "api_base_override" not in sent


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
                    | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
                    max_leaves=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.fixed_dictionaries({}, optional={
    "model": st.sampled_from(["router", "a", "claude", "nope"]) | JSON, "messages": JSON | st.lists(
        st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "tool", "x"]) | JSON,
                               "content": JSON}), max_size=3),
    "stream": JSON, "temperature": JSON, "max_tokens": JSON, "tools": JSON}))
def test_no_body_makes_the_server_answer_500(server, body):
    r = server.post("/v1/chat/completions", json=body)
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        error_of(r)


HEADER_VALUE = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.strip)
HEADERS = st.dictionaries(
    st.sampled_from(["x-llmrouter-tier", "x-llmrouter-key", "x-llmrouter-pin", "x-llmrouter-surface",
                     "x-llmrouter-session", "x-llmrouter-deadline", "x-llmrouter-language", "content-type",
                     "authorization", "x-anything"]), HEADER_VALUE, max_size=5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(headers=HEADERS, deep=st.integers(0, 3))
def test_no_headers_make_the_server_answer_500(server, headers, deep):
    body = {**HELLO, "metadata": {"k": 1} if deep else None}
    r = server.post("/v1/chat/completions", json=body, headers=headers)
    assert r.status_code < 500, r.text
    assert server.get("/healthz").status_code == 200


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=JSON | st.fixed_dictionaries({}, optional={"id": JSON | st.text(max_size=10), "score": JSON}))
def test_no_feedback_body_makes_the_server_answer_500(server, body):
    r = server.post("/v1/feedback", json=body)
    assert r.status_code < 500, r.text
    assert r.status_code == 202 or error_of(r)["type"] == "invalid_request_error"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3), headers=HEADERS)
def test_models_always_answers(server, query, headers):
    r = server.get("/v1/models", params=query, headers=headers)
    assert r.status_code == 200 and r.json()["data"][0]["id"] == "router"


def test_models_health_and_metrics(server, emu):
    ids = [m["id"] for m in server.get("/v1/models").json()["data"]]
    assert ids[:2] == ["router", "router:default"] and {"a", "b", "claude", "vision", "text"} <= set(ids)
    emu.script("a", Behavior(status=500))
    server.post("/v1/chat/completions", json=HELLO)
    health = server.get("/healthz").json()
    assert health["status"] == "ok" and health["targets"]["a"] == "closed"
    metrics = server.get("/metrics").text
    assert 'llmrouter_attempts_total{outcome="failed",target="a"} 1' in metrics
    assert 'llmrouter_attempts_total{outcome="ok",target="a"} 1' in metrics
    assert 'llmrouter_requests_total{outcome="ok",route="main",target="a"} 1' in metrics
    assert 'llmrouter_circuit_state{target="a"} 0' in metrics and "llmrouter_response_start_seconds_count" in metrics
    assert server.get("/nope").status_code == 404 and error_of(server.get("/nope"))["code"] == "not_found"


def test_fifty_concurrent_streams_each_get_exactly_their_answer(fake_router, serve, emu):
    emu.set_default("a", Behavior(token_delay_s=0.005))
    emu.script("a", *[Behavior(cut_after=3)] * 5)  # five streams break mid-answer: clear errors

    async def one(client: httpx.AsyncClient, i: int) -> tuple[str, str]:
        body = {**HELLO, "stream": True, "messages": [{"role": "user", "content": f"request {i} please answer"}]}
        async with client.stream("POST", "/v1/chat/completions", json=body) as r:
            events = sse_events((await r.aread()).decode())
        if events[-1] == "[DONE]":
            return "ok", "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
        return "error", events[-1]["error"]["code"]

    async def all_of_them() -> list[tuple[str, str]]:
        async with httpx.AsyncClient(base_url=url, timeout=30, limits=httpx.Limits(max_connections=60)) as client:
            return await asyncio.gather(*(one(client, i) for i in range(50)))

    with serve(create_app(fake_router, policy=FallbackPolicy(breaker_failures=100))) as url:
        results = asyncio.run(all_of_them())
    ok = [text for kind, text in results if kind == "ok"]
    errors = [code for kind, code in results if kind == "error"]
    assert len(ok) == 45 and errors == ["stream_interrupted"] * 5
    answered = {int(t.split()[3]) for t in ok}
    wrong = [t for t in ok if t != f"a says: request {int(t.split()[3])} please answer"]
    assert not wrong and len(answered) == 45
    assert len(emu.seen("a")) == 50 and not emu.seen("b")  # one upstream call each: nothing duplicated
