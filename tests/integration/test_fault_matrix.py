"""The whole fault matrix against the emulator, streamed and not: every fault ends in the complete
answer or in one clear error, never in a truncated success, and within the deadline plus 10%.
With a healthy fallback that accepts an assistant prefill, a stream cut, stalled or garbled
mid-answer is finished there, so the client still gets the whole answer."""

from __future__ import annotations

import time
from typing import Any

import pytest
from test_faults import ask, ask_stream, router_for

from llmrouter.config import FallbackPolicy
from llmrouter.errors import ProviderError
from llmrouter.testing import Behavior

TEXT = " ".join(f"w{i}" for i in range(60))  # what every healthy target answers
POLICY = FallbackPolicy(deadline_s=4, max_retries=2, backoff_base_s=0.01, backoff_cap_s=0.05, retry_after_cap_s=2,
                        first_token_timeout_s=0.5, stream_idle_timeout_s=0.5)
PREFILL = {"prefill": True}  # an OpenAI-compatible target that continues a trailing assistant message
BOTH, STREAM = ("complete", "stream"), ("stream",)

# name: (how a fails, where it applies, who should answer: a, b, or None for one clear error)
FAULTS: dict[str, tuple[list[Behavior] | Behavior, tuple[str, ...], str | None]] = {
    "429 with a short Retry-After": ([Behavior(status=429, retry_after=0.3)], BOTH, "a"),
    "429 with a Retry-After past the cap": ([Behavior(status=429, retry_after=120)], BOTH, "b"),
    "429 without Retry-After": ([Behavior(status=429)], BOTH, "a"),
    "a burst of 500s": ([Behavior(status=500)] * 2, BOTH, "a"),
    "500s past the retries": (Behavior(status=500), BOTH, "b"),
    "a burst of 503s": ([Behavior(status=503)] * 2, BOTH, "a"),
    "503s past the retries": (Behavior(status=503), BOTH, "b"),
    "connection reset": (Behavior(reset=True), BOTH, "b"),
    "a silent target": (Behavior(hang=True), BOTH, "b"),
    "headers, then silence": (Behavior(stall_after=0), STREAM, "b"),
    "a slow first token": (Behavior(token_delay_s=2), STREAM, "b"),
    "a slow response": (Behavior(latency_s=2), ("complete",), "b"),
    "the stream cut after 20 tokens": (Behavior(cut_after=20), STREAM, "b"),
    "a stall after 20 tokens": (Behavior(stall_after=20), STREAM, "b"),
    "a malformed chunk after 20 tokens": (Behavior(malformed_after=20), STREAM, "b"),
    "a clean end after 20 tokens, without finish or [DONE]": (Behavior(end_after=20), STREAM, "b"),
    "a whole answer without [DONE]": (Behavior(no_done=True), STREAM, "a"),
    "an answer under another model name": (Behavior(model="someone-else"), BOTH, "a"),
    "a 400": (Behavior(status=400), BOTH, None),
}
CASES = [pytest.param(name, kind, id=f"{kind}: {name}") for name, (_, kinds, _) in FAULTS.items() for kind in kinds]


def fails_as(emu: Any, name: str, fault: list[Behavior] | Behavior) -> None:
    healthy = Behavior(text=TEXT)
    emu.set_default("a", healthy)
    if isinstance(fault, list):
        emu.script("a", *(Behavior(**{**vars(b), "text": TEXT}) for b in fault))
    else:
        emu.set_default("a", Behavior(**{**vars(fault), "text": TEXT}))
    emu.set_default(name, healthy)


def outcome(router: Any, kind: str) -> tuple[str | None, str | None, Exception | None, Any]:
    """(text, answering target, error, what came back) for one request of `kind`."""
    try:
        if kind == "stream":
            text, stream, err = ask_stream(router)
            return (text if err is None else None), stream.completion and stream.completion.target, err, stream
        done = ask(router)
    except ProviderError as exc:  # before any content: the request failed as a whole
        return None, None, exc, None
    return done.text, done.target, None, done


@pytest.mark.parametrize("name,kind", CASES)
def test_each_fault_ends_in_the_whole_answer_or_one_clear_error_in_time(emu, name, kind):
    fault, _, answers = FAULTS[name]
    fails_as(emu, "b", fault)
    router = router_for(emu, {"main": ["a", "b"]}, POLICY, a={"timeout_s": 30}, b=PREFILL)
    t0 = time.monotonic()
    text, target, err, _ = outcome(router, kind)
    assert time.monotonic() - t0 <= POLICY.deadline_s * 1.1
    if answers is None:
        assert text is None and isinstance(err, ProviderError) and err.status == 400 and not emu.seen("b")
        return
    assert err is None and text == TEXT and target == answers, (err, text)


def test_a_continued_stream_is_one_answer_with_usage_summed_over_both_targets(emu):
    fails_as(emu, "b", Behavior(cut_after=20))
    router = router_for(emu, {"main": ["a", "b"]}, POLICY, b=PREFILL)
    text, stream, err = ask_stream(router)
    done = stream.completion
    assert err is None and text == TEXT and done.finish_reason == "stop"
    assert stream.continued_by == ["b"] and done.continued_by == "b" and done.target == "b"
    sent = emu.seen("b")[0].body["messages"]
    assert sent[-1]["role"] == "assistant" and TEXT.startswith(sent[-1]["content"])
    assert len(sent[-1]["content"].split()) == 20  # exactly what the client already had
    a_part, b_part = done.segments
    assert (a_part.target, a_part.estimated, b_part.target, b_part.estimated) == ("a", True, "b", False)
    assert b_part.usage.completion_tokens in (40, 41)  # b streamed only the rest (its count: 40 words + a space)
    assert done.usage.completion_tokens == a_part.usage.completion_tokens + b_part.usage.completion_tokens > 41
    assert [a.outcome for a in done.attempts] == ["failed", "ok"] and done.attempts[1].continuation


def test_an_anthropic_fallback_continues_without_trailing_whitespace(emu):
    fails_as(emu, "claude", Behavior(cut_after=20))  # Anthropic refuses a prefill ending in whitespace
    router = router_for(emu, {"main": ["a", "claude"]}, POLICY)  # anthropic: prefill by default
    text, stream, err = ask_stream(router)
    assert err is None and text == TEXT and stream.continued_by == ["claude"]


def test_a_fallback_that_rejects_the_prefill_is_passed_over_for_one_that_continues(emu):
    fails_as(emu, "c", Behavior(cut_after=20))
    emu.set_default("b", Behavior(text=TEXT, prefill=False))  # says prefill = true, answers 400
    router = router_for(emu, {"main": ["a", "b", "c"]}, POLICY, b=PREFILL, c=PREFILL)
    text, stream, err = ask_stream(router)
    assert err is None and text == TEXT and stream.continued_by == ["c"]
    rejected = [a for a in stream.attempts if a.target == "b"]
    assert [(a.outcome, a.status) for a in rejected] == [("failed", 400)]


def test_when_no_target_can_continue_the_error_names_the_original_failure(emu):
    fails_as(emu, "b", Behavior(cut_after=20))
    emu.set_default("b", Behavior(text=TEXT, prefill=False))
    emu.set_default("c", Behavior(text=TEXT))
    router = router_for(emu, {"main": ["a", "b", "c"]}, POLICY, b=PREFILL)  # c: no prefill declared
    text, stream, err = ask_stream(router)
    assert isinstance(err, ProviderError) and err.status == 502 and stream.completion is None
    assert "a failed after the answer had started" in str(err) and "400" not in str(err)
    assert len(text.split()) == 20 and not emu.seen("c")  # never asked: it cannot continue
    assert any(a.target == "c" and "does not accept an assistant prefill" in a.reason for a in stream.attempts)


def test_continuation_can_be_turned_off(emu):
    fails_as(emu, "b", Behavior(cut_after=20))
    policy = POLICY.with_overrides(continue_streams=False)
    text, stream, err = ask_stream(router_for(emu, {"main": ["a", "b"]}, policy, b=PREFILL))
    assert isinstance(err, ProviderError) and "incomplete" in str(err) and not emu.seen("b")


def test_a_cyclic_config_visits_each_target_once_streamed_too(emu):
    fails_as(emu, "b", Behavior(status=500))
    router = router_for(emu, {"main": ["a", "b", "a", "b"]}, POLICY.with_overrides(max_retries=0))
    text, stream, err = ask_stream(router)
    assert err is None and text == TEXT and stream.target == "b"
    assert len(emu.seen("a")) == 1 and len(emu.seen("b")) == 1


@pytest.mark.parametrize("kind", BOTH)
def test_an_outage_then_recovery_closes_the_breaker_again(emu, kind):
    fails_as(emu, "b", Behavior(status=503))
    policy = POLICY.with_overrides(max_retries=0, breaker_failures=2, breaker_cooldown_s=0.5)
    router = router_for(emu, {"main": ["a", "b"]}, policy)
    assert [outcome(router, kind)[1] for _ in range(4)] == ["b"] * 4
    assert len(emu.seen("a")) == 2 and router.chain.breakers["a"].state == "open"
    emu.set_default("a", Behavior(text=TEXT))  # a is back
    time.sleep(0.6)
    assert [outcome(router, kind)[1] for _ in range(3)] == ["a"] * 3
    assert router.chain.breakers["a"].state == "closed"


def test_a_long_stream_cut_after_the_deadline_still_continues(emu):
    # a stream's deadline is for reaching content; the continuation gets the same to reach its own
    fails_as(emu, "b", Behavior(cut_after=30, token_delay_s=0.05))  # cut at ~1.5 s
    policy = POLICY.with_overrides(deadline_s=1.0)
    text, stream, err = ask_stream(router_for(emu, {"main": ["a", "b"]}, policy, b=PREFILL))
    assert err is None and text == TEXT and stream.continued_by == ["b"]
