"""Hedging and health-aware ordering against the emulator: a slow first target gets a second
attempt racing it on the next one (bounded, counted); a target that keeps failing is tried after
the healthy ones before its breaker would open."""

from __future__ import annotations

import time

from test_faults import ask, router_for

from llmrouter.config import FallbackPolicy
from llmrouter.testing import Behavior

HEDGED = FallbackPolicy(deadline_s=10, backoff_base_s=0.01, hedge_after_ms=200)


def test_a_slow_first_target_is_hedged_and_the_first_answer_wins(emu):
    emu.set_default("a", Behavior(latency_s=3))
    router = router_for(emu, {"main": ["a", "b"]}, HEDGED)
    t0 = time.monotonic()
    done = ask(router)
    assert done.target == "b" and done.text == "b says: hello world"
    assert time.monotonic() - t0 < 3  # did not wait for a
    by_target = {a.target: a for a in done.attempts}
    assert by_target["a"].outcome == "cancelled" and not by_target["a"].hedge
    assert by_target["b"].outcome == "ok" and by_target["b"].hedge
    assert router.chain.hedges.counts == {"sent": 1, "won": 1}
    assert router.chain.breakers["a"].state == "closed"  # losing a race is not a failure


def test_a_first_answer_before_the_hedge_delay_sends_no_hedge(emu):
    router = router_for(emu, {"main": ["a", "b"]}, HEDGED)
    done = ask(router)
    assert done.target == "a" and not emu.seen("b") and not router.chain.hedges.counts


def test_the_first_target_can_still_win_the_race(emu):
    emu.set_default("a", Behavior(latency_s=0.4))
    emu.set_default("b", Behavior(latency_s=3))
    router = router_for(emu, {"main": ["a", "b"]}, HEDGED)
    done = ask(router)
    assert done.target == "a" and len(emu.seen("b")) == 1
    assert router.chain.hedges.counts == {"sent": 1}
    assert [a.outcome for a in done.attempts if a.target == "b"] == ["cancelled"]


def test_hedges_are_bounded_by_the_budget(emu):
    emu.set_default("a", Behavior(latency_s=0.5))
    router = router_for(emu, {"main": ["a", "b"]}, HEDGED.with_overrides(hedge_budget=0.0))
    for _ in range(4):
        ask(router)
    assert router.chain.hedges.counts["sent"] == 2 and router.chain.hedges.counts["denied"] == 2  # the burst only
    assert len(emu.seen("b")) == 2


def test_a_hedge_is_not_sent_when_the_first_target_failed_over_already(emu):
    emu.set_default("a", Behavior(status=500))
    emu.set_default("b", Behavior(latency_s=0.5))
    router = router_for(emu, {"main": ["a", "b"]}, HEDGED.with_overrides(max_retries=0))
    done = ask(router)
    assert done.target == "b" and len(emu.seen("b")) == 1 and not router.chain.hedges.counts.get("sent")


def test_a_hedge_that_fails_leaves_the_first_attempt_to_answer(emu):
    emu.set_default("a", Behavior(latency_s=0.5))
    emu.set_default("b", Behavior(status=500))
    router = router_for(emu, {"main": ["a", "b"]}, HEDGED.with_overrides(max_retries=0))
    done = ask(router)
    assert done.target == "a" and router.chain.hedges.counts == {"sent": 1}


def test_an_unhealthy_target_is_tried_after_the_healthy_ones_before_its_breaker_opens(emu):
    policy = FallbackPolicy(max_retries=0, breaker_failures=50, health_ordering=True)
    router = router_for(emu, {"main": ["a", "b"]}, policy)
    emu.set_default("a", Behavior(status=500))
    assert [ask(router).target for _ in range(3)] == ["b"] * 3
    assert len(emu.seen("a")) == 3 and router.chain.breakers["a"].state == "closed"
    assert router.chain.health.problem("a") == "recent error rate 100%"
    assert [ask(router).target for _ in range(3)] == ["b"] * 3
    assert len(emu.seen("a")) == 3  # b goes first now: a is not asked while b answers


def test_without_health_ordering_the_table_order_stands(emu):
    router = router_for(emu, {"main": ["a", "b"]}, FallbackPolicy(max_retries=0, breaker_failures=50))
    emu.set_default("a", Behavior(status=500))
    for _ in range(6):
        ask(router)
    assert len(emu.seen("a")) == 6 and router.chain.health is None
