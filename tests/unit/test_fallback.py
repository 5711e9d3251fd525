"""FallbackChain and CircuitBreaker rules, with scripted in-memory providers (no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmrouter.config import Target
from llmrouter.errors import AllTargetsFailed, ProviderError, ProviderTimeout, RequestError
from llmrouter.config import FallbackPolicy
from llmrouter.fallback import ChainStream, CircuitBreaker, FallbackChain
from llmrouter.errors import ContextTooLong
from llmrouter.providers import ProviderResponse, StreamChunk

HANG = "hang"


class Scripted:
    """A provider that plays a list of outcomes: text, an exception, or HANG; the last repeats."""

    def __init__(self, target: Target, *outcomes: Any) -> None:
        self.target, self.outcomes, self.calls = target, list(outcomes) or ["ok"], 0

    def _next(self) -> Any:
        self.calls += 1
        return self.outcomes.pop(0) if len(self.outcomes) > 1 else self.outcomes[0]

    async def complete(self, body: dict[str, Any]) -> ProviderResponse:
        o = self._next()
        if o == HANG:
            await asyncio.sleep(3600)
        if isinstance(o, BaseException):
            raise o
        return ProviderResponse(text=f"{self.target.name}:{o}")

    async def stream(self, body: dict[str, Any]):
        o = self._next()
        yield StreamChunk(delta={"role": "assistant"})
        if isinstance(o, tuple):  # (tokens before failing, error)
            n, err = o
            for i in range(n):
                yield StreamChunk(delta={"content": f"t{i} "})
            raise err
        if isinstance(o, BaseException):
            raise o
        for word in f"{self.target.name} says {o}".split():
            yield StreamChunk(delta={"content": word + " "})
        yield StreamChunk(finish_reason="stop")


def target(name: str, **kw: Any) -> Target:
    return Target(name=name, model=name, base_url="http://127.0.0.1:9/v1", **kw)


def err(status: int | None = 500, retryable: bool | None = None, **kw: Any) -> ProviderError:
    if retryable is None:
        retryable = status is None or status in (408, 429) or status >= 500
    return ProviderError(f"HTTP {status}", status=status, retryable=retryable, **kw)


class Sleeps(list):
    async def __call__(self, s: float) -> None:
        self.append(s)


def make_chain(outcomes: dict[str, list[Any]], policy: FallbackPolicy | None = None,
               targets: dict[str, Target] | None = None, rng: float = 0.5) -> tuple[FallbackChain, dict[str, Scripted], Sleeps]:
    targets = targets or {n: target(n) for n in outcomes}
    providers = {n: Scripted(targets[n], *outcomes.get(n, [])) for n in targets}
    sleeps = Sleeps()
    chain = FallbackChain(targets, policy or FallbackPolicy(deadline_s=5), providers=providers,
                          rng=lambda: rng, sleep=sleeps)
    return chain, providers, sleeps


def run(coro: Any) -> Any:
    return asyncio.run(coro)


BODY = {"messages": [{"role": "user", "content": "hi"}]}


# --- circuit breaker ---------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_breaker_opens_after_consecutive_failures_and_probes_once():
    clock = Clock()
    b = CircuitBreaker(failures=3, cooldown_s=10, clock=clock)
    b.failure(), b.failure()
    b.success()  # a success resets the streak
    b.failure(), b.failure()
    assert b.state == "closed" and b.allow()
    b.failure()
    assert b.state == "open" and not b.allow()
    assert b.retry_in() == pytest.approx(10)
    clock.t = 10
    assert b.state == "half_open"
    assert b.allow() and not b.allow()  # one probe at a time
    b.failure()  # the probe failed: open again, a full cooldown
    assert b.state == "open" and b.retry_in() == pytest.approx(10)
    clock.t = 20
    assert b.allow()
    b.release()  # no verdict (client left): another request may probe
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow() and b.allow()


# --- planning ----------------------------------------------------------------------------
def test_plan_visits_each_target_once_and_keeps_images_off_text_only_targets():
    chain, _, _ = make_chain({}, targets={"a": target("a"), "v": target("v", vision=True)})
    order, skipped = chain.plan(["a", "v", "a", "v"], has_image=False)
    assert order == ["a", "v"] and [s.reason for s in skipped] == ["listed twice; tried once"] * 2
    order, skipped = chain.plan(["a", "v"], has_image=True)
    assert order == ["v"] and "text-only" in skipped[0].reason
    with pytest.raises(RequestError, match="image"):
        chain.plan(["a", "a"], has_image=True)


# --- retries and fallback ----------------------------------------------------------------
def test_retryable_failure_is_retried_on_the_same_target_with_jittered_backoff():
    chain, p, sleeps = make_chain({"a": [err(503), err(502), "ok"], "b": ["ok"]},
                                  FallbackPolicy(max_retries=2, backoff_base_s=0.1, backoff_cap_s=10), rng=0.5)
    resp, name, attempts = run(chain.complete(["a", "b"], BODY))
    assert (resp.text, name, p["a"].calls, p["b"].calls) == ("a:ok", "a", 3, 0)
    assert sleeps == [pytest.approx(0.05), pytest.approx(0.1)]  # rng * base * 2**retry
    assert [a.retry for a in attempts] == [0, 1, 2] and attempts[-1].outcome == "ok"


def test_retries_are_bounded_then_the_next_target_answers():
    chain, p, _ = make_chain({"a": [err(500)], "b": ["ok"]}, FallbackPolicy(max_retries=2))
    resp, name, attempts = run(chain.complete(["a", "b"], BODY))
    assert name == "b" and p["a"].calls == 3
    assert [(a.target, a.outcome) for a in attempts] == [("a", "failed")] * 3 + [("b", "ok")]


def test_retry_after_is_honoured_up_to_the_cap():
    chain, p, sleeps = make_chain({"a": [err(429, retry_after=2.0), "ok"], "b": ["ok"]})
    _, name, attempts = run(chain.complete(["a", "b"], BODY))
    assert name == "a" and 2.0 <= sleeps[0] <= 2.2 and attempts[1].waited_s == sleeps[0]
    chain, p, sleeps = make_chain({"a": [err(429, retry_after=60.0), "ok"], "b": ["ok"]},
                                  FallbackPolicy(retry_after_cap_s=10))
    _, name, _ = run(chain.complete(["a", "b"], BODY))
    assert name == "b" and sleeps == [] and p["a"].calls == 1


def test_a_deterministic_4xx_ends_the_request_and_other_4xx_move_on():
    chain, p, _ = make_chain({"a": [err(400)], "b": ["ok"]})
    with pytest.raises(ProviderError) as info:
        run(chain.complete(["a", "b"], BODY))
    assert info.value.status == 400 and p["a"].calls == 1 and p["b"].calls == 0
    chain, p, _ = make_chain({"a": [err(401)], "b": ["ok"]})
    _, name, _ = run(chain.complete(["a", "b"], BODY))
    assert name == "b" and p["a"].calls == 1  # a key problem of a: never retried on a


def test_context_length_error_only_goes_to_a_larger_window():
    targets = {"small": target("small", context_window=4096), "same": target("same", context_window=4096),
               "big": target("big", context_window=128000)}
    chain, p, _ = make_chain({"small": [ContextTooLong("too long", status=400)], "same": ["ok"], "big": ["ok"]},
                             targets=targets)
    _, name, attempts = run(chain.complete(["small", "same", "big"], BODY))
    assert name == "big" and p["same"].calls == 0 and "context window" in attempts[1].reason


def test_a_timed_out_attempt_is_not_retried_on_the_same_target():
    targets = {"a": target("a", timeout_s=0.05), "b": target("b")}
    chain, p, _ = make_chain({"a": [HANG], "b": ["ok"]}, targets=targets)
    _, name, attempts = run(chain.complete(["a", "b"], BODY))
    assert name == "b" and p["a"].calls == 1 and "no answer within" in attempts[0].reason


def test_total_deadline_covers_every_attempt():
    chain, p, _ = make_chain({"a": [HANG], "b": [HANG]}, FallbackPolicy(deadline_s=0.1))
    with pytest.raises(ProviderTimeout) as info:
        run(chain.complete(["a", "b"], BODY))
    assert info.value.status == 504 and p["b"].calls == 0


def test_a_backoff_longer_than_the_deadline_moves_on_instead_of_sleeping():
    chain, p, sleeps = make_chain({"a": [err(429, retry_after=5.0)], "b": ["ok"]}, FallbackPolicy(deadline_s=1))
    _, name, _ = run(chain.complete(["a", "b"], BODY))
    assert name == "b" and sleeps == []


def test_when_every_circuit_is_open_the_request_fails_fast_with_retry_after():
    chain, p, _ = make_chain({"a": [err(500)], "b": [err(500)]},
                             FallbackPolicy(max_retries=0, breaker_failures=1, breaker_cooldown_s=30))
    with pytest.raises(AllTargetsFailed) as first:
        run(chain.complete(["a", "b"], BODY))
    assert "a: HTTP 500" in str(first.value) and "b: HTTP 500" in str(first.value)
    with pytest.raises(AllTargetsFailed) as second:
        run(chain.complete(["a", "b"], BODY))
    assert second.value.status == 503 and 29 < second.value.retry_after <= 30
    assert "circuit open" in str(second.value) and p["a"].calls == 1 and p["b"].calls == 1


def test_request_errors_do_not_trip_the_breaker():
    chain, p, _ = make_chain({"a": [err(400)]}, FallbackPolicy(breaker_failures=1))
    for _ in range(3):
        with pytest.raises(ProviderError):
            run(chain.complete(["a"], BODY))
    assert chain.breakers["a"].state == "closed" and p["a"].calls == 3


# --- streaming ---------------------------------------------------------------------------
async def collect(chain: FallbackChain, names: list[str]) -> tuple[str, str, list[Any]]:
    s = ChainStream(chain, names, BODY)
    await s.start()
    text = "".join([c.delta.get("content") or "" async for c in s])
    return text, s.target or "", s.attempts


def test_stream_failing_before_content_falls_back_transparently():
    chain, p, _ = make_chain({"a": [(0, err(None, retryable=False))], "b": ["ok"]})
    text, name, attempts = run(collect(chain, ["a", "b"]))
    assert (text, name) == ("b says ok ", "b") and attempts[0].outcome == "failed"


def test_stream_failing_after_content_without_a_prefill_target_raises_and_counts_against_the_target():
    # the scripted targets are OpenAI-compatible: no assistant prefill, so b cannot continue
    chain, p, _ = make_chain({"a": [(2, err(None))], "b": ["ok"]}, FallbackPolicy(breaker_failures=1))

    async def go() -> tuple[list[str], Any]:
        s = ChainStream(chain, ["a", "b"], BODY)
        await s.start()
        got = []
        with pytest.raises(ProviderError) as info:
            async for c in s:
                got.append(c.delta.get("content"))
        return got, (info.value, s.attempts)

    got, (e, attempts) = run(go())
    assert [g for g in got if g] == ["t0 ", "t1 "] and e.status == 502 and "incomplete" in str(e)
    assert p["b"].calls == 0 and attempts[-2].reason.startswith("cut mid-answer")
    assert attempts[-1].target == "b" and "does not accept an assistant prefill" in attempts[-1].reason
    assert chain.breakers["a"].state == "open"


# --- properties --------------------------------------------------------------------------
OUTCOME = st.sampled_from(["ok", 500, 429, 401, 400, "timeout"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(route=st.lists(st.sampled_from("abcd"), min_size=1, max_size=8),
       plays=st.dictionaries(st.sampled_from("abcd"), st.lists(OUTCOME, min_size=1, max_size=4), min_size=4),
       max_retries=st.integers(0, 2))
def test_any_route_and_failures_visit_each_target_once_and_obey_the_rules(route, plays, max_retries):
    def as_outcome(o: Any) -> Any:
        if o == "timeout":
            return ProviderTimeout("slow")
        return o if o == "ok" else err(o, retry_after=0.01 if o == 429 else None)

    outcomes = {n: [as_outcome(o) for o in plays.get(n, ["ok"])] for n in "abcd"}
    chain, p, sleeps = make_chain(outcomes, FallbackPolicy(max_retries=max_retries, breaker_failures=100))
    attempts: list[Any] = []
    chain.listeners.append(attempts.append)  # every attempt, also when the request fails
    try:
        _, name, _ = run(chain.complete(route, BODY))
    except ProviderError as e:
        name = None
        assert e.status in (400, 503)
        assert e.status == 503 or attempts[-1].status == 400  # a 400 ends the request at once
    # each target is visited in one contiguous run of tries, and at most max_retries + 1 times
    tried = [a.target for a in attempts if a.outcome != "skipped"]
    runs = [t for i, t in enumerate(tried) if i == 0 or tried[i - 1] != t]
    assert len(runs) == len(set(runs))
    assert all(p[n].calls <= max_retries + 1 for n in "abcd")
    assert all(p[n].calls == 0 for n in "abcd" if n not in route)
    if name is not None:  # the answer comes from the first target whose tries reached an "ok"
        assert runs[-1] == name and attempts[-1].outcome == "ok"


def test_a_bug_in_an_adapter_fails_that_target_only():
    chain, p, _ = make_chain({"a": [KeyError("function")], "b": ["ok"]})
    _, name, attempts = run(chain.complete(["a", "b"], BODY))
    assert name == "b" and p["a"].calls == 1 and "adapter failed: KeyError" in attempts[0].reason
