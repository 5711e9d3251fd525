"""first_token_timeout_s against the emulator: a target that is silent, or slow to its first token,
hands the request to the next target long before its own timeout, and is not retried on itself."""

from __future__ import annotations

import time
from typing import Any

import pytest
from test_faults import ask, ask_stream, router_for

from llmrouter.config import FallbackPolicy
from llmrouter.testing import Behavior

SLOW_TARGET = {"timeout_s": 30.0}  # a whole attempt may take 30 s...
QUICK = FallbackPolicy(deadline_s=40, backoff_base_s=0.01, max_retries=2, first_token_timeout_s=0.5)  # ...its start not


@pytest.mark.parametrize("silent", [
    Behavior(stall_after=0),  # headers, then nothing
    Behavior(latency_s=5),  # nothing at all for 5 s
    Behavior(token_delay_s=3),  # the first token after 3 s
])
def test_a_silent_stream_moves_to_the_next_target(emu, silent):
    router = router_for(emu, {"main": ["a", "b"]}, QUICK, a=SLOW_TARGET)
    emu.set_default("a", silent)
    t0 = time.monotonic()
    text, stream, err = ask_stream(router)
    assert err is None and text == "b says: one two three four five" and stream.target == "b"
    assert time.monotonic() - t0 < 3  # not the 30 s attempt timeout
    failed = [a for a in stream.attempts if a.outcome == "failed"]
    assert [a.target for a in failed] == ["a"] and "no first token within 0.50s" in failed[0].reason
    assert len(emu.seen("a")) == 1  # a silent target is not retried on itself


def test_a_non_streamed_request_gets_the_same_limit_on_its_response(emu):
    router = router_for(emu, {"main": ["a", "b"]}, QUICK, a=SLOW_TARGET)
    emu.set_default("a", Behavior(latency_s=5))
    t0 = time.monotonic()
    done = ask(router)
    assert done.target == "b" and time.monotonic() - t0 < 3 and len(emu.seen("a")) == 1
    assert "no response within 0.50s" in next(a.reason for a in done.attempts if a.outcome == "failed")


def test_a_targets_own_limit_wins_and_no_limit_means_the_attempt_timeout(emu):
    policy = FallbackPolicy(deadline_s=10, backoff_base_s=0.01, max_retries=0)  # no [fallback] limit
    own: dict[str, Any] = {"timeout_s": 30.0, "first_token_timeout_s": 0.3}
    router = router_for(emu, {"main": ["a", "b"]}, policy, a=own)
    emu.set_default("a", Behavior(latency_s=5))
    assert ask(router).target == "b"
    patient = router_for(emu, {"main": ["a", "b"]}, policy, a={"timeout_s": 30.0})
    emu.set_default("a", Behavior(latency_s=1))  # slow, but no limit: a answers
    assert ask(patient).target == "a"
