"""Provider adapters at the unit level: wire formats both ways, the one httpx->ProviderError
mapping, keys kept out of errors, and the SSE reader under arbitrary chunking."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrouter.config import Target
from llmrouter.errors import ProviderError, ProviderTimeout
from llmrouter.errors import ContextTooLong
from llmrouter.providers.anthropic import AnthropicProvider, from_anthropic, to_anthropic
from llmrouter.providers.base import error_from_status, iter_sse, map_errors, parse_retry_after
from llmrouter.providers.local import LocalProvider
from llmrouter.providers.openai import OpenAIProvider

KEY = "sk-test-0123456789abcdef"


def target(provider: str = "openai", **kw: Any) -> Target:
    base = "http://upstream.test/v1" if provider == "openai" else "http://upstream.test"
    return Target(name="t", provider=provider, model="m-1", base_url=base, **kw)


class Chunks(httpx.AsyncByteStream):
    def __init__(self, parts: list[bytes]) -> None:
        self.parts = parts

    async def __aiter__(self):
        for p in self.parts:
            yield p


def client(handler: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- errors ------------------------------------------------------------------------------
@pytest.mark.parametrize("status,retryable", [(500, True), (503, True), (529, True), (408, True), (429, True),
                                              (400, False), (401, False), (404, False), (422, False)])
def test_status_mapping_says_whether_a_retry_may_succeed(status, retryable):
    e = error_from_status(status, b'{"error": {"message": "nope"}}', httpx.Headers(), target())
    assert e.retryable is retryable and e.status == status and "nope" in str(e)


def test_retry_after_in_seconds_and_as_an_http_date():
    assert parse_retry_after("3") == 3.0 and parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == pytest.approx(10.0)
    e = error_from_status(429, b"{}", httpx.Headers({"retry-after": "7"}), target())
    assert e.retry_after == 7.0


@pytest.mark.parametrize("body", [
    b'{"error": {"message": "This model\'s maximum context length is 8192 tokens", "code": "context_length_exceeded"}}',
    b'{"type": "error", "error": {"type": "invalid_request_error", "message": "prompt is too long: 210000 tokens"}}',
])
def test_context_length_errors_are_recognised(body):
    assert isinstance(error_from_status(400, body, httpx.Headers(), target()), ContextTooLong)


@pytest.mark.parametrize("exc,kind,retryable", [
    (httpx.ConnectError("refused"), ProviderError, True),
    (httpx.ReadTimeout("slow"), ProviderTimeout, True),
    (httpx.RemoteProtocolError("peer closed"), ProviderError, True),
    (httpx.UnsupportedProtocol("ftp"), ProviderError, False),
])
def test_httpx_errors_become_provider_errors(exc, kind, retryable):
    with pytest.raises(kind) as info, map_errors(target()):
        raise exc
    assert info.value.retryable is retryable and info.value.target == "t"


def test_the_key_comes_from_the_environment_and_never_shows_in_errors(monkeypatch):
    monkeypatch.setenv("TEST_PROVIDER_KEY", KEY)
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["auth"] = request.headers["authorization"]
        seen["body"] = json.loads(request.content)
        return httpx.Response(401, json={"error": {"message": f"Incorrect API key provided: {KEY}"}})

    p = OpenAIProvider(target(api_key_env="TEST_PROVIDER_KEY"), client(handler))
    with pytest.raises(ProviderError) as info:
        run(p.complete({"messages": [{"role": "user", "content": "hi"}]}))
    assert seen["auth"] == f"Bearer {KEY}" and seen["body"]["model"] == "m-1"
    assert KEY not in str(info.value) and "[redacted]" in str(info.value) and info.value.status == 401


def test_a_missing_key_variable_is_named_in_the_error(monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    p = OpenAIProvider(target(api_key_env="NOT_SET_ANYWHERE"), client(lambda r: httpx.Response(200)))
    with pytest.raises(ProviderError, match="NOT_SET_ANYWHERE is not set"):
        run(p.complete({"messages": []}))


# --- OpenAI-compatible -------------------------------------------------------------------
def sse(*events: Any) -> list[bytes]:
    return [b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n" for e in events]


def delta(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    d = {"content": content} if content is not None else {}
    return {"choices": [{"index": 0, "delta": d, "finish_reason": finish}]}


def stream_of(provider: Any, body: dict[str, Any] | None = None) -> list[Any]:
    async def go() -> list[Any]:
        return [c async for c in provider.stream(body or {"messages": []})]

    return run(go())


def test_openai_stream_passes_deltas_through_and_needs_a_proper_end():
    parts = sse(delta("Hel"), delta("lo"), delta(finish="stop"), b"[DONE]")
    p = OpenAIProvider(target(), client(lambda r: httpx.Response(200, stream=Chunks(parts))))
    chunks = stream_of(p)
    assert "".join(c.delta.get("content", "") for c in chunks) == "Hello" and chunks[-1].finish_reason == "stop"
    p = OpenAIProvider(target(), client(lambda r: httpx.Response(200, stream=Chunks(sse(delta("Hel"))))))
    with pytest.raises(ProviderError, match="before the answer was complete"):
        stream_of(p)
    p = OpenAIProvider(target(), client(lambda r: httpx.Response(200, stream=Chunks(sse(delta("a"), b"{oops")))))
    with pytest.raises(ProviderError, match="malformed"):
        stream_of(p)


# --- Anthropic ---------------------------------------------------------------------------
def test_openai_chat_becomes_an_anthropic_messages_request():
    body = {
        "max_tokens": 50, "stop": "END", "temperature": 0.2,
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
        "tool_choice": "required",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Weather here?"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "12C"},
            {"role": "user", "content": "Thanks"},
        ],
    }
    out = to_anthropic(body, "claude-x")
    assert out["system"] == "Be brief." and out["max_tokens"] == 50 and out["stop_sequences"] == ["END"]
    assert out["tool_choice"] == {"type": "any"} and out["tools"][0]["input_schema"] == {"type": "object"}
    assert [t["role"] for t in out["messages"]] == ["user", "assistant", "user"]
    assert out["messages"][0]["content"][1]["source"] == {"type": "base64", "media_type": "image/png", "data": "AAAA"}
    assert out["messages"][1]["content"] == [{"type": "tool_use", "id": "c1", "name": "get_weather",
                                              "input": {"city": "Oslo"}}]
    assert out["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": "c1", "content": "12C"}
    assert out["messages"][2]["content"][1] == {"type": "text", "text": "Thanks"}


def test_anthropic_answer_becomes_an_openai_style_response():
    r = from_anthropic({"content": [{"type": "text", "text": "Let me check."},
                                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"x": 1}}],
                        "stop_reason": "tool_use", "usage": {"input_tokens": 9, "output_tokens": 4}}, "m")
    assert r.text == "Let me check." and r.finish_reason == "tool_calls"
    assert r.tool_calls[0]["function"] == {"name": "f", "arguments": '{"x": 1}'}
    assert r.usage == {"prompt_tokens": 9, "completion_tokens": 4}


def test_anthropic_stream_with_a_tool_call_and_an_overloaded_error():
    def ev(kind: str, **data: Any) -> bytes:
        return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()

    parts = [ev("message_start", message={"usage": {"input_tokens": 5}}),
             ev("content_block_start", index=0, content_block={"type": "tool_use", "id": "t1", "name": "f"}),
             ev("content_block_delta", index=0, delta={"type": "input_json_delta", "partial_json": '{"x":'}),
             ev("content_block_delta", index=0, delta={"type": "input_json_delta", "partial_json": " 1}"}),
             ev("message_delta", delta={"stop_reason": "tool_use"}, usage={"output_tokens": 3}),
             ev("message_stop")]
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["url"], seen["version"] = str(request.url), request.headers["anthropic-version"]
        return httpx.Response(200, stream=Chunks(parts))

    chunks = stream_of(AnthropicProvider(target("anthropic"), client(handler)))
    assert seen["url"] == "http://upstream.test/v1/messages" and seen["version"]
    calls = [c.delta["tool_calls"][0] for c in chunks if "tool_calls" in c.delta]
    assert calls[0]["id"] == "t1" and "".join(c["function"]["arguments"] for c in calls) == '{"x": 1}'
    assert chunks[-1].finish_reason == "tool_calls" and chunks[-1].usage == {"prompt_tokens": 5, "completion_tokens": 3}
    overloaded = [ev("message_start", message={}), ev("error", error={"type": "overloaded_error", "message": "busy"})]
    p = AnthropicProvider(target("anthropic"), client(lambda r: httpx.Response(200, stream=Chunks(overloaded))))
    with pytest.raises(ProviderError, match="busy") as info:
        stream_of(p)
    assert info.value.retryable


# --- SSE reader --------------------------------------------------------------------------
@settings(max_examples=100, deadline=None)
@given(texts=st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=20),
                      min_size=1, max_size=6),
       cuts=st.lists(st.integers(1, 400), max_size=10), crlf=st.booleans())
def test_sse_events_survive_any_split_of_the_byte_stream(texts, cuts, crlf):
    nl = "\r\n" if crlf else "\n"
    raw = "".join(f": keep-alive{nl}event: e{i}{nl}data: {json.dumps(t)}{nl}{nl}" for i, t in enumerate(texts)).encode()
    points = sorted({c % len(raw) for c in cuts} | {0, len(raw)})
    parts = [raw[a:b] for a, b in zip(points, points[1:])]

    async def go() -> list[tuple[str, str]]:
        return [e async for e in iter_sse(httpx.Response(200, stream=Chunks(parts)))]

    assert run(go()) == [(f"e{i}", json.dumps(t)) for i, t in enumerate(texts)]


# --- local -------------------------------------------------------------------------------
class FakeLlama:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def create_chat_completion(self, messages: list[dict[str, Any]], stream: bool, max_tokens: int, **kw: Any):
        self.calls.append({"messages": messages, "max_tokens": max_tokens, **kw})
        for word in ["local ", "answer"]:
            yield {"choices": [{"delta": {"content": word}, "finish_reason": None}]}
        yield {"choices": [{"delta": {}, "finish_reason": "stop"}]}


def test_local_provider_builds_its_model_once_and_flattens_content_parts():
    llama, loads = FakeLlama(), []
    p = LocalProvider(target("local"), loader=lambda t: loads.append(t) or llama)
    body = {"max_tokens": 7, "temperature": 0.1,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}
    first = run(p.complete(body))
    second = run(p.complete(body))
    assert first.text == second.text == "local answer" and first.finish_reason == "stop" and len(loads) == 1
    assert llama.calls[0] == {"messages": [{"role": "user", "content": "a\nb"}], "max_tokens": 7, "temperature": 0.1}


def test_local_provider_maps_a_context_overflow():
    class Overflow:
        def create_chat_completion(self, **kw: Any):
            raise ValueError("Requested tokens (5000) exceed context window of 2048")

    p = LocalProvider(target("local"), loader=lambda t: Overflow())
    with pytest.raises(ContextTooLong):
        run(p.complete({"messages": [{"role": "user", "content": "x"}]}))


@pytest.mark.model
def test_local_provider_answers_with_the_real_default_model():
    p = LocalProvider(Target(name="local", provider="local", model="smollm2-135m", context_window=2048))
    r = run(p.complete({"max_tokens": 8, "temperature": 0, "messages": [{"role": "user", "content": "Say hello."}]}))
    assert r.text.strip() and r.finish_reason in ("stop", "length")
