"""The fault matrix: each provider failure, produced by the emulator on a real socket, and what
llmrouter makes of it (acomplete / open_stream over a FallbackChain, httpx underneath)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import structlog
from fixtures_providers import FakeRouter, fleet

from llmrouter.router import Router
from llmrouter.testing import Behavior, Emulator
from llmrouter.testing.fakes import FixedDecider
from llmrouter.errors import AllTargetsFailed, ProviderError, ProviderTimeout
from llmrouter.config import FallbackPolicy

FAST = FallbackPolicy(deadline_s=5, backoff_base_s=0.01, backoff_cap_s=0.05)


def router_for(emu: Emulator, routes: dict[str, list[str]], policy: FallbackPolicy = FAST, **overrides: Any) -> FakeRouter:
    return FakeRouter(fleet(emu, routes, **overrides), fallback=policy)


def ask(router: FakeRouter, text: str = "hello world", **kw: Any) -> Any:
    async def go() -> Any:
        try:
            return await router.acomplete(text, **kw)
        finally:
            await router.chain.aclose()

    return asyncio.run(go())


def ask_stream(router: FakeRouter, text: str = "one two three four five", **kw: Any) -> tuple[str, Any, Exception | None]:
    """(text received, the stream, the error that ended it or None)."""
    async def go() -> tuple[str, Any, Exception | None]:
        got: list[str] = []
        stream = await router.open_stream(text, **kw)
        try:
            async for chunk in stream:
                got.append(chunk.delta.get("content") or "")
        except ProviderError as exc:
            return "".join(got), stream, exc
        finally:
            await stream.aclose()
            await router.chain.aclose()
        return "".join(got), stream, None

    return asyncio.run(go())


def test_primary_500_is_served_by_the_fallback(emu):
    router = router_for(emu, {"main": ["a", "b"]})
    emu.set_default("a", Behavior(status=500))
    done = ask(router)
    assert done.target == "b" and done.text == "b says: hello world"
    assert len(emu.seen("a")) == FAST.max_retries + 1 and len(emu.seen("b")) == 1
    assert [a.outcome for a in done.attempts] == ["failed"] * 3 + ["ok"]
    assert all(a.status == 500 for a in done.attempts[:3])


def test_429_retry_after_is_waited_out_on_the_same_target(emu):
    router = router_for(emu, {"main": ["a", "b"]})
    emu.script("a", Behavior(status=429, retry_after=1))
    done = ask(router)
    first, second = emu.seen("a")
    assert done.target == "a" and not emu.seen("b")
    assert second.at - first.at >= 1.0 and done.attempts[1].waited_s >= 1.0


def test_429_with_a_retry_after_above_the_cap_goes_to_the_fallback_at_once(emu):
    router = router_for(emu, {"main": ["a", "b"]})
    emu.script("a", Behavior(status=429, retry_after=120))
    done = ask(router)
    assert done.target == "b" and len(emu.seen("a")) == 1 and done.attempts[0].waited_s == 0


def test_a_hanging_target_cannot_outlive_the_total_deadline(emu):
    # each target would wait 30 s on its own: only the request's 1 s deadline can end this early
    router = router_for(emu, {"main": ["a", "b"]}, FallbackPolicy(deadline_s=1.0), a={"timeout_s": 30},
                        b={"timeout_s": 30})
    emu.set_default("a", Behavior(hang=True))
    emu.set_default("b", Behavior(hang=True))
    t0 = time.monotonic()
    with pytest.raises(ProviderTimeout) as info:
        ask(router)
    elapsed = time.monotonic() - t0
    assert elapsed >= 1.0, elapsed  # it waited the whole deadline...
    assert elapsed < 15, elapsed  # ...and gave up long before a target's own 30 s timeout
    assert info.value.status == 504 and "deadline of 1.00s" in str(info.value)


def test_a_targets_own_max_retries_wins_over_the_tables(emu):
    router = router_for(emu, {"main": ["a", "b"]}, FallbackPolicy(max_retries=3, backoff_base_s=0.01,
                                                                  backoff_cap_s=0.02), a={"max_retries": 0})
    emu.set_default("a", Behavior(status=503))
    done = ask(router)
    assert done.target == "b" and len(emu.seen("a")) == 1  # a: no retry, though the table allows 3
    other = router_for(emu, {"main": ["c", "b"]}, FallbackPolicy(max_retries=3, backoff_base_s=0.01,
                                                                 backoff_cap_s=0.02))
    emu.set_default("c", Behavior(status=503))
    assert ask(other).target == "b" and len(emu.seen("c")) == 4  # c: the table's 3 retries


def test_a_per_target_timeout_leaves_time_for_the_fallback(emu):
    router = router_for(emu, {"main": ["a", "b"]}, FallbackPolicy(deadline_s=5), a={"timeout_s": 0.3})
    emu.set_default("a", Behavior(hang=True))
    done = ask(router)
    assert done.target == "b" and len(emu.seen("a")) == 1  # a timeout is not retried on a


def test_connection_reset_is_retried(emu):
    router = router_for(emu, {"main": ["a", "b"]})
    emu.script("a", Behavior(reset=True))
    done = ask(router)
    assert done.target == "a" and "connection broken" in done.attempts[0].reason


def test_stream_cut_before_the_first_token_falls_back(emu):
    router = router_for(emu, {"main": ["a", "b"]})
    emu.set_default("a", Behavior(cut_after=0))
    text, stream, error = ask_stream(router)
    assert error is None and text == "b says: one two three four five" and stream.target == "b"
    assert stream.completion.text == text and stream.completion.finish_reason == "stop"


def test_malformed_chunk_before_the_first_token_falls_back(emu):
    router = router_for(emu, {"main": ["a", "b"]})
    emu.set_default("a", Behavior(malformed_after=0))
    text, stream, error = ask_stream(router)
    assert error is None and stream.target == "b" and "malformed" in stream.attempts[0].reason


def test_stream_cut_mid_answer_ends_with_an_error_not_a_success(emu):
    router = router_for(emu, {"main": ["a", "b"]})
    emu.set_default("a", Behavior(cut_after=2))
    text, stream, error = ask_stream(router)
    assert text == "a says: " and isinstance(error, ProviderError) and error.status == 502
    assert "incomplete" in str(error) and stream.completion is None and not emu.seen("b")


def test_a_stalled_stream_is_ended_by_the_idle_timeout(emu):
    router = router_for(emu, {"main": ["a", "b"]}, FallbackPolicy(stream_idle_timeout_s=0.3))
    emu.set_default("a", Behavior(stall_after=1))
    text, _, error = ask_stream(router)
    assert text == "a " and isinstance(error, ProviderError) and "stalled" in str(error)


def test_all_targets_down_is_one_clear_error(emu):
    router = router_for(emu, {"main": ["a", "b"]})
    emu.set_default("a", Behavior(status=503))
    emu.set_default("b", Behavior(reset=True))
    with pytest.raises(AllTargetsFailed) as info:
        ask(router)
    msg = str(info.value)
    assert info.value.status == 503 and "all targets of route 'main' failed" in msg
    assert "a: HTTP 503" in msg and "b: connection broken" in msg


def test_cyclic_config_tries_each_target_once(emu):
    router = router_for(emu, {"main": ["a", "b", "a", "b", "a"]}, FallbackPolicy(max_retries=0))
    emu.set_default("a", Behavior(status=500))
    emu.set_default("b", Behavior(status=500))
    with pytest.raises(AllTargetsFailed):
        ask(router)
    assert len(emu.seen("a")) == 1 and len(emu.seen("b")) == 1


def test_traffic_returns_to_the_primary_after_the_breakers_probe(emu):
    router = router_for(emu, {"main": ["a", "b"]},
                        FallbackPolicy(max_retries=0, breaker_failures=2, breaker_cooldown_s=0.5))
    emu.set_default("a", Behavior(status=500))
    served = [ask(router).target for _ in range(4)]
    assert served == ["b"] * 4 and len(emu.seen("a")) == 2  # open after 2 failures: a is skipped
    assert router.chain.breakers["a"].state == "open"
    emu.set_default("a", Behavior())  # a recovers
    assert ask(router).target == "b"  # still cooling down
    time.sleep(0.6)
    probe = ask(router)
    assert probe.target == "a" and router.chain.breakers["a"].state == "closed"
    assert [ask(router).target for _ in range(3)] == ["a"] * 3


def test_a_context_length_error_goes_only_to_a_larger_target(emu):
    router = router_for(emu, {"main": ["small", "same", "big"]},
                        small={"context_window": 4096}, same={"context_window": 4096}, big={"context_window": 200000})
    emu.set_default("small", Behavior(status=400, error_code="context_length_exceeded"))
    done = ask(router)
    assert done.target == "big" and not emu.seen("same") and len(emu.seen("small")) == 1


def test_a_deterministic_400_is_not_retried_anywhere(emu):
    router = router_for(emu, {"main": ["a", "b"]})
    emu.set_default("a", Behavior(status=400))
    with pytest.raises(ProviderError) as info:
        ask(router)
    assert info.value.status == 400 and len(emu.seen("a")) == 1 and not emu.seen("b")


def test_anthropic_target_overloaded_falls_back_and_answers_when_healthy(emu):
    router = router_for(emu, {"main": ["claude", "a"]}, FallbackPolicy(max_retries=0))
    emu.script("claude", Behavior(status=529))
    assert ask(router).target == "a"
    done = ask(router)
    assert done.target == "claude" and done.text == "claude says: hello world" and done.usage.completion_tokens == 4
    text, stream, error = ask_stream(router)
    assert error is None and stream.target == "claude" and text == "claude says: one two three four five"


def test_keys_go_to_the_provider_and_nowhere_else(emu, monkeypatch):
    secret = "sk-live-" + "x1y2z3" * 4
    monkeypatch.setenv("EMU_KEY", secret)
    router = router_for(emu, {"main": ["a", "claude"]}, FallbackPolicy(max_retries=0),
                        a={"api_key_env": "EMU_KEY"}, claude={"api_key_env": "EMU_KEY"})
    emu.script("a", Behavior(status=500))
    with structlog.testing.capture_logs() as logs:
        done = ask(router)
    assert emu.seen("a")[0].headers["authorization"] == f"Bearer {secret}"
    assert emu.seen("claude")[0].headers["x-api-key"] == secret
    assert done.target == "claude" and secret not in repr(logs) and secret not in done.model_dump_json()
    failed = [e for e in logs if e["event"] == "provider_attempt" and e["outcome"] == "failed"]
    assert len(failed) == 1 and failed[0]["target"] == "a" and failed[0]["status"] == 500


def test_sync_complete_works_inside_and_outside_an_event_loop(emu):
    router = router_for(emu, {"main": ["a"]})
    assert router.complete("plain").text == "a says: plain"

    async def inside() -> str:
        return router.complete("nested").text  # a notebook cell: a loop is already running

    assert asyncio.run(inside()) == "a says: nested"


def test_a_burst_past_the_decide_wait_takes_the_cheap_stage_and_rules_never_wait(emu):
    class SlowDecider(FixedDecider):
        def __init__(self, route: str) -> None:
            super().__init__(route)
            self.calls = 0

        def decide(self, text: str, *, explain: bool = False) -> Any:
            self.calls += 1
            time.sleep(0.3)  # the router model, busy
            return super().decide(text)

    cfg = fleet(emu, {"main": ["a"], "other": ["b"]})
    decider = SlowDecider("other")
    router = Router(cfg, decider=decider, cache=None, fallback=FallbackPolicy(decide_wait_s=0.1))

    async def burst() -> list[Any]:
        try:
            return await asyncio.gather(*(router.acomplete(f"requests for main {i}") for i in range(3)))
        finally:
            await router.chain.aclose()

    done = asyncio.run(burst())
    assert sorted(d.decision.source for d in done) == ["cheap", "cheap", "model"] and decider.calls == 1
    busy = [d for d in done if d.decision.source == "cheap"]
    assert all("router model busy" in d.decision.reason and d.decision.decider == "cheap:examples" for d in busy)
    assert all(d.decision.route == "main" and d.target == "a" for d in busy)  # the text says main
    assert [d.target for d in done if d.decision.source == "model"] == ["b"]