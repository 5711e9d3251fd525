"""Routing under load, through `llmrouter serve`'s app with the real router model: requests that
rules can decide never wait for the model, and the busy model's overflow gets the cheap stage's
decision, never silently the default route."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from llmrouter.config import Config, FallbackPolicy
from llmrouter.router import Router
from llmrouter.server import create_app

pytestmark = pytest.mark.model
PINNED, UNPINNED = 240, 60


@pytest.fixture
def pinnable(model_router, emu):
    """The default table on the real model; `code` answered by emulated `p`, the rest by `a`; a
    rule honours pins to code or chat."""
    data = model_router.config.to_dict()
    data["router"]["cache"] = False
    data["targets"] = {n: {"provider": "openai", "model": f"{n}-model", "base_url": emu.base_url(n)} for n in "ap"}
    for route in data["routes"]:
        route["targets"] = ["p"] if route["name"] == "code" else ["a"]
    data["rules"] = [{"name": "pins", "when": {"pin": ["code", "chat"]}, "then": {"use_pin": True}}]
    return Router(Config.from_dict(data), decider=model_router.decider)


async def _burst(url: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=PINNED + UNPINNED + 10)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        def ask(i: int, pin: bool) -> object:
            headers = {"x-llmrouter-pin": "code"} if pin else {}
            body = {"model": "router", "messages": [{"role": "user", "content": f"Tell me a joke about cats, take {i}"}]}
            return client.post("/v1/chat/completions", json=body, headers=headers)

        calls = [ask(i, pin=i % 5 != 0) for i in range(PINNED + UNPINNED)]  # pinned and not, interleaved
        return list(await asyncio.gather(*calls))


def test_pinned_requests_never_wait_for_a_busy_model(pinnable, serve, emu):
    app = create_app(pinnable, policy=FallbackPolicy(deadline_s=30, decide_wait_s=0.2, max_retries=0))
    with serve(app) as url:
        answers = asyncio.run(_burst(url))
    assert all(r.status_code == 200 for r in answers)
    pinned = [r for i, r in enumerate(answers) if i % 5 != 0]
    others = [r for i, r in enumerate(answers) if i % 5 == 0]
    assert len(pinned) == PINNED
    assert {(r.headers["x-llmrouter-source"], r.headers["x-llmrouter-route"], r.headers["x-llmrouter-target"])
            for r in pinned} == {("rule", "code", "p")}
    sources = Counter(r.headers["x-llmrouter-source"] for r in others)
    assert set(sources) <= {"model", "cheap"} and sources["model"] >= 1, sources  # never the default route
    busy = [r for r in others if r.headers["x-llmrouter-source"] == "cheap"]
    assert all(r.headers["x-llmrouter-decider"].startswith("cheap:") for r in busy)
    assert len(emu.seen("p")) == PINNED


def test_two_workers_each_decide_with_their_own_context(default_config):
    router = Router(default_config.with_router(cache=False, workers=2, max_batch=1))
    try:
        a, b = router.pool.deciders
        assert a is not b and a.llm._ctx.ctx != b.llm._ctx.ctx
        texts = [f"Write a Python function number {i} that adds two numbers" for i in range(6)]
        verdicts = [f.result(60) for f in [router.pool.submit(t) for t in texts]]
        assert all(v.route == "code" for v in verdicts)
        assert router.pool.per_worker[0] > 0 and router.pool.per_worker[1] > 0
    finally:
        router.close()
