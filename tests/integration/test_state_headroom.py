"""Counters answered from this process's last read while far below their limit
(state/headroom.py), on a real redis-server: near the limit every check asks Redis, so a limit
two processes share holds exactly when their requests do not overlap."""

from __future__ import annotations

import time
from typing import Any

import pytest

from llmrouter.config import StateSettings
from llmrouter.state import SharedState

redis = pytest.importorskip("redis")


def state_on(url: str, **settings: Any) -> SharedState:
    state = SharedState(StateSettings(url=url, **settings))
    assert state.link.check()
    return state


@pytest.mark.parametrize("local_below", [0.0, 0.5, 0.9])
def test_a_request_rate_two_processes_share_admits_exactly_its_limit(redis_server, local_below):
    rates = [state_on(redis_server.url, read_ttl_s=10.0, local_below=local_below).request_rate("rpm")
             for _ in range(2)]
    admitted = 0
    for n in range(40):
        rate = rates[n % 2]
        admitted += rate.admit("k", 20) is None
        assert rate.w.link.flush()  # the count's answer is back before the next request
    assert admitted == 20
    (counted, _), = state_on(redis_server.url, read_ttl_s=0.0).request_rate("rpm").w.sums(["k"])
    assert counted == 20


def test_far_below_its_limit_a_request_rate_is_admitted_without_a_round_trip(redis_server):
    from redis.connection import AbstractConnection

    state = state_on(redis_server.url, read_ttl_s=10.0, local_below=0.5)
    rate, asked = state.request_rate("rpm"), 0
    send = AbstractConnection.send_packed_command

    def counted(self: Any, *args: Any, **kwargs: Any) -> None:
        nonlocal asked
        asked += not getattr(self, "llmrouter_fire_and_forget", False)
        send(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AbstractConnection, "send_packed_command", counted)
        for _ in range(20):
            assert rate.admit("k", 100) is None
            assert state.link.flush()
    assert asked == 1  # the first admit reads; the next 19 stay below 50 of 100


def test_a_key_budget_two_processes_share_is_spent_exactly_once(redis_server, tmp_path):
    from llmrouter.server.auth import KeyStore, Meter
    from llmrouter.server.wire import HTTPError

    keys = KeyStore(tmp_path / "keys.json")
    _, key = keys.create("k", budget_usd=10.0)
    meters = [Meter(keys, state_on(redis_server.url, read_ttl_s=10.0)) for _ in range(2)]
    answered = refused = 0
    for n in range(30):
        meter = meters[n % 2]
        try:
            meter.admit(key)
        except HTTPError as exc:
            assert exc.code == "insufficient_quota"
            refused += 1
            continue
        meter.settle(key, 10, 1.0)
        answered += 1
        assert meter.link is not None and meter.link.flush()
    assert (answered, refused) == (10, 20)


@pytest.mark.parametrize("session_read_ttl_s, seen", [(None, "math"), (60.0, "code")])
def test_with_session_affinity_a_session_this_process_served_is_answered_here(redis_server, session_read_ttl_s, seen):
    """A process that served a session answers its next turn from its own entry for
    session_read_ttl_s (a proxy with affinity keeps the session there); by default it reads it."""
    here = state_on(redis_server.url, session_read_ttl_s=session_read_ttl_s).sessions("t", 600.0, 100)
    there = state_on(redis_server.url).sessions("t", 600.0, 100)
    here.set("s", "code")
    assert here.link.flush()
    there.set("s", "math")  # the session moved: another process served a turn
    assert there.link.flush()
    time.sleep(0.15)  # past the default read_ttl_s
    assert here.get("s") == seen
