"""The pieces of failover that need no socket: health scores, the hedge budget, the prefill body
and how a continued answer's parts are fitted together."""

from __future__ import annotations

import asyncio

import pytest

from llmrouter.config import Target
from llmrouter.errors import ProviderError
from llmrouter.fallback.continuation import Parts, with_prefill
from llmrouter.fallback.health import Health
from llmrouter.fallback.hedge import HedgeBudget, first_answer
from llmrouter.providers import StreamChunk
from llmrouter.types import Attempt


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def feed(health: Health, target: str, outcomes: list[bool | float], clock: Clock, step: float = 1.0) -> None:
    """True/False: an ok / failed attempt; a float: an ok attempt taking that many ms."""
    for o in outcomes:
        ok = o is not False
        ms = o if isinstance(o, float) else 100.0
        health(Attempt(target=target, outcome="ok" if ok else "failed", elapsed_ms=ms, status=None if ok else 500))
        clock.now += step


def test_a_failing_target_moves_back_and_returns_once_the_evidence_decays():
    clock = Clock()
    health = Health(clock)
    feed(health, "a", [False] * 4, clock)
    assert health.order(["a", "b"])[0] == ["b", "a"] and "error rate" in health.problem("a")
    clock.now += 120  # four half-lives without news: not enough evidence left to judge
    assert health.order(["a", "b"]) == (["a", "b"], {})


def test_occasional_errors_do_not_move_a_target():
    clock = Clock()
    health = Health(clock)
    feed(health, "a", [True, True, False, True, True, False, True, True], clock)
    assert health.problem("a") is None


def test_a_target_slower_than_it_usually_is_moves_back_but_a_slow_one_by_nature_does_not():
    clock = Clock()
    health = Health(clock)
    feed(health, "big", [2000.0] * 20, clock)  # always slow: that is how it is
    feed(health, "a", [100.0] * 20, clock)
    assert health.problem("big") is None and health.problem("a") is None
    feed(health, "a", [900.0] * 5, clock)  # a slows down to 9x its usual
    assert "recent latency" in health.problem("a")
    assert health.order(["a", "big", "c"])[0] == ["big", "c", "a"]
    clock.now += 61  # no answers for two half-lives: stale, so real traffic may probe it again
    assert health.problem("a") is None


def test_request_faults_skips_and_cancelled_hedges_say_nothing_about_a_target():
    clock = Clock()
    health = Health(clock)
    for outcome, status in [("failed", 400), ("failed", 422), ("skipped", None), ("cancelled", None)] * 3:
        health(Attempt(target="a", outcome=outcome, status=status))
    assert health.problem("a") is None


def test_the_hedge_budget_allows_a_burst_then_its_share_of_requests():
    budget = HedgeBudget(share=0.25)
    sent = 0
    for _ in range(100):
        budget.earn()
        sent += budget.spend()
    assert 25 <= sent <= 27 and budget.counts["sent"] == sent and budget.counts["denied"] == 100 - sent


def test_first_answer_waits_past_a_failure_but_not_past_a_bad_request():
    async def fail(status: int, after: float) -> None:
        await asyncio.sleep(after)
        raise ProviderError("x", status=status)

    async def answer(after: float) -> str:
        await asyncio.sleep(after)
        return "ok"

    async def race(main_coro, hedge_coro):  # type: ignore[no-untyped-def]
        return await first_answer(asyncio.ensure_future(main_coro), asyncio.ensure_future(hedge_coro))

    assert asyncio.run(race(fail(500, 0), answer(0.05))) == ("ok", True)
    with pytest.raises(ProviderError) as info:
        asyncio.run(race(fail(400, 0), answer(0.05)))
    assert info.value.status == 400
    with pytest.raises(ProviderError):
        asyncio.run(race(fail(500, 0), fail(503, 0.01)))


def test_the_prefill_is_the_partial_answer_without_trailing_whitespace():
    body = {"messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    assert with_prefill(body, "Hello the ") == {**body, "messages": [*body["messages"],
                                                                     {"role": "assistant", "content": "Hello the"}]}
    own = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Sure: "}]}
    assert with_prefill(own, "one two ")["messages"][-1] == {"role": "assistant", "content": "Sure: one two"}
    assert body["messages"][-1]["role"] == "user"  # the original body is left alone


def test_a_continuation_drops_its_repeated_role_and_the_whitespace_the_client_has():
    parts = Parts()
    parts.begin("a", {"messages": [{"role": "user", "content": "x" * 40}]})
    for chunk in [StreamChunk(delta={"role": "assistant", "content": ""}), StreamChunk(delta={"content": "one "}),
                  StreamChunk(delta={"content": "two "})]:
        parts.deliver(chunk)
    parts.begin("b", {})
    out = [parts.deliver(c) for c in [StreamChunk(delta={"role": "assistant", "content": ""}),
                                      StreamChunk(delta={"content": " "}), StreamChunk(delta={"content": " three"}),
                                      StreamChunk(finish_reason="stop", usage={"prompt_tokens": 9,
                                                                                 "completion_tokens": 2})]]
    assert out[0] is None and out[1] is None and out[2].delta == {"content": "three"}
    assert parts.text() == "one two three"
    a, b = parts.segments()
    assert (a.target, a.estimated, a.usage.completion_tokens) == ("a", True, 2)  # "one two " = 8 chars
    assert a.usage.prompt_tokens > 0 and (b.estimated, b.usage.completion_tokens) == (False, 2)


def test_tool_calls_are_noticed_so_they_are_never_continued():
    parts = Parts()
    parts.begin("a", {})
    parts.deliver(StreamChunk(delta={"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}))
    assert parts.has_tool_calls


def test_prefill_defaults_follow_the_provider_kind():
    anthropic = Target(name="c", provider="anthropic", model="m", base_url="http://x")
    openai = Target(name="o", provider="openai", model="m", base_url="http://x")
    assert anthropic.accepts_prefill and not openai.accepts_prefill
    assert openai.model_copy(update={"prefill": True}).accepts_prefill
    assert not anthropic.model_copy(update={"prefill": False}).accepts_prefill
