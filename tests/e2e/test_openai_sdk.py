"""The official openai SDK, unchanged, pointed at `llmrouter serve` with the real router model
deciding and emulated targets answering; and the same router through the Python API."""

from __future__ import annotations

import asyncio

import openai
import pytest

from llmrouter.config import Config
from llmrouter.testing import Behavior
from llmrouter.config import FallbackPolicy
from llmrouter.router import Router
from llmrouter.server import create_app

pytestmark = pytest.mark.model
QUESTION = [{"role": "user", "content": "Explain TCP slow start"}]


@pytest.fixture
def routed(model_router, emu):
    """The default route table and the real model, every route answered by emulated a, then b."""
    data = model_router.config.to_dict()
    data["router"]["cache"] = False
    data["router"]["cascade"] = False  # the model decides every request
    data["targets"] = {n: {"provider": "openai", "model": f"{n}-model", "base_url": emu.base_url(n)} for n in "ab"}
    for route in data["routes"]:
        route["targets"] = ["a", "b"]
    return Router(Config.from_dict(data), decider=model_router.decider)


@pytest.fixture
def client(routed, serve):
    app = create_app(routed, policy=FallbackPolicy(deadline_s=10, backoff_base_s=0.01, max_retries=0))
    with serve(app) as url:
        yield openai.OpenAI(base_url=f"{url}/v1", api_key="unused-by-llmrouter", max_retries=0)


def test_sdk_gets_a_routed_answer(client, routed, emu):
    raw = client.chat.completions.with_raw_response.create(model="router", messages=QUESTION)
    answer = raw.parse()
    assert answer.choices[0].message.content == "a says: Explain TCP slow start"
    assert raw.headers["x-llmrouter-route"] in routed.config.table.names
    assert raw.headers["x-llmrouter-source"] == "model" and 0 < float(raw.headers["x-llmrouter-confidence"]) <= 1
    assert answer.usage.completion_tokens == 6 and len(emu.seen("a")) == 1


def test_sdk_streams_a_routed_answer_across_a_failed_primary(client, emu):
    emu.set_default("a", Behavior(cut_after=0))
    chunks = list(client.chat.completions.create(model="router:default", messages=QUESTION, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "b says: Explain TCP slow start" and chunks[-1].choices[0].finish_reason == "stop"


def test_sdk_sees_an_error_not_a_short_answer_when_a_stream_breaks(client, emu):
    emu.set_default("a", Behavior(cut_after=2))
    got = []
    with pytest.raises(openai.APIError, match="incomplete"):
        for c in client.chat.completions.create(model="router", messages=QUESTION, stream=True):
            got.append(c.choices[0].delta.content or "")
    assert "".join(got) == "a says: "


def test_sdk_errors_are_typed_and_clear(client, emu):
    with pytest.raises(openai.BadRequestError, match="messages is empty"):
        client.chat.completions.create(model="router", messages=[])
    with pytest.raises(openai.NotFoundError, match="unknown model"):
        client.chat.completions.create(model="gpt-nine", messages=QUESTION)
    emu.set_default("a", Behavior(status=500))
    emu.set_default("b", Behavior(status=503))
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="router", messages=QUESTION)
    assert info.value.status_code == 503 and "all targets" in info.value.message
    assert {"router", "a", "b"} <= {m.id for m in client.models.list()}


def test_python_api_completes_and_streams(routed, emu):
    done = routed.complete("Translate 'good morning' into French")
    assert done.target == "a" and done.decision.source == "model" and done.route == done.decision.route
    assert done.text == "a says: Translate 'good morning' into French"

    async def stream() -> str:
        return "".join([c.delta.get("content") or "" async for c in routed.stream("Write a haiku")])

    emu.set_default("a", Behavior(status=503))  # retried on a (default policy), then b answers
    assert asyncio.run(stream()) == "b says: Write a haiku"
    assert len(emu.seen("a")) == 1 + 3
