"""What a request costs the shared state, counted in round trips to a real redis-server: writes
made inside a batch go together when it closes, unwaited, their answers read by the sender's
thread; a script Redis forgot is loaded again on the way; and a whole request (key meter and
policy before the model, the writes after it and after the answer) waits for one round trip."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmrouter.config import Config, StateSettings
from llmrouter.state import SharedState
from llmrouter.state.link import Write, read_all
from llmrouter.types import Decision, Request

redis = pytest.importorskip("redis")
SPENT_K = "llmr:key:spent_micro_usd:k"  # key k's spend, in micro-USD


@dataclass
class Trips:
    """Commands (or pipelines) this process sent: `waited` on the pools' connections, sync and
    asyncio (each a round trip the caller waits for), `sent` on the sender's (answers read by its
    thread)."""

    waited: int = 0
    sent: int = 0

    def now(self) -> tuple[int, int]:
        return self.waited, self.sent


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[Trips]:
    from redis.asyncio.connection import AbstractConnection as AsyncConnection
    from redis.connection import AbstractConnection

    from llmrouter.state.sender import MARK

    counts, send, asend = Trips(), AbstractConnection.send_packed_command, AsyncConnection.send_packed_command

    def counted(self: Any, *args: Any, **kwargs: Any) -> None:
        if getattr(self, MARK, False):
            counts.sent += 1
        else:
            counts.waited += 1
        send(self, *args, **kwargs)

    async def acounted(self: Any, *args: Any, **kwargs: Any) -> None:
        counts.waited += 1
        await asend(self, *args, **kwargs)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    monkeypatch.setattr(AsyncConnection, "send_packed_command", acounted)  # the server's waited read
    yield counts


def state_on(url: str, **settings: Any) -> SharedState:
    state = SharedState(StateSettings(url=url, **settings))
    assert state.link.check()
    return state


def test_writes_in_a_batch_reach_redis_together_when_it_closes_unwaited(redis_server, trips):
    state, raw = state_on(redis_server.url), redis_server.client()
    window, total, sessions = state.window("w", 60.0), state.key_spend(), state.sessions("t", 60.0, 10)
    state.link.later(Write(lambda r: r.ping()))  # the sender's connection opens
    assert state.link.flush()
    waited, sent = trips.now()
    with state.link.batch():
        window.add({"a": 2.0})
        total.charge("k", 0.5)
        with state.link.batch():  # an inner batch joins the outer one
            sessions.set("s", "code")
        with state.link.batch(join=False):  # unless it must count at once
            window.add({"b": 1.0})
        inside = trips.now()
    assert (inside, trips.now()) == ((waited, sent + 1), (waited, sent + 2))
    assert raw.get(SPENT_K) == "500000"  # sent before this read: Redis has it
    assert raw.get(sessions._key("s")) == "code"
    assert state.link.flush()
    assert window.sums(["a"])[0][0] == 2.0 and total.spent_usd("k") == 0.5


def test_answers_to_unwaited_writes_reach_their_writes_in_order(redis_server):
    state = state_on(redis_server.url)
    got: list[Any] = []
    for n in range(50):
        with state.link.batch():
            state.link.later(Write(lambda r: r.incrby("n", 1), done=got.append))
            state.link.later(Write(lambda r: r.incrby("m", 2), done=got.append))
    assert state.link.flush()
    assert got == [v for n in range(1, 51) for v in (n, 2 * n)]


def delivered(got: list[Any], within_s: float = 5.0) -> bool:
    """Whether an answer reached `got` within `within_s`, no flush asked for."""
    deadline = time.monotonic() + within_s
    while not got and time.monotonic() < deadline:
        time.sleep(0.005)
    return bool(got)


def test_the_reader_comes_by_for_answers_and_a_send_wakes_it_once_it_sleeps(redis_server, monkeypatch):
    from llmrouter.state import sender

    monkeypatch.setattr(sender, "SLEEP_AFTER_S", 0.05)
    state = state_on(redis_server.url)
    got: list[Any] = []
    state.link.later(Write(lambda r: r.incrby("n", 1), done=got.append))
    assert delivered(got) and got == [1]  # read on its rounds
    for _ in range(200):  # nothing sent: it goes to sleep
        if state.link.sender._asleep:
            break
        time.sleep(0.01)
    assert state.link.sender._asleep
    woke: list[Any] = []
    state.link.later(Write(lambda r: r.incrby("n", 1), done=woke.append))
    assert delivered(woke) and woke == [2]  # the send woke it


def test_unwaited_writes_fail_and_redis_is_marked_down_when_it_goes(redis_server):
    state, failed = state_on(redis_server.url, probe_s=60.0), []
    state.link.later(Write(lambda r: r.ping()))
    assert state.link.flush()
    redis_server.stop()
    for _ in range(200):  # the first send on the dead connection may still go out; its answer never comes
        state.link.later(Write(lambda r: r.incrby("n", 1), failed=lambda: failed.append(1)))
        state.link.flush(1.0)
        if not state.link.up:
            break
    assert not state.link.up and failed
    count = len(failed)
    state.link.later(Write(lambda r: r.incrby("n", 1), failed=lambda: failed.append(1)))
    assert len(failed) == count + 1  # while down: failed at once, nothing sent


def test_a_batch_whose_script_redis_forgot_still_lands(redis_server):
    state, raw = state_on(redis_server.url), redis_server.client()
    window = state.window("w", 60.0)
    window.add({"a": 1.0})
    raw.script_flush()  # as after a restart: EVALSHA answers NOSCRIPT
    with state.link.batch():
        window.add({"a": 1.0})
        state.key_spend().charge("k", 1.0)
    assert state.link.flush()  # the rerun goes from the sender's thread, once NOSCRIPT is read
    assert state.link.up and state.link.outages == 0
    assert window.sums(["a"])[0][0] == 2.0 and state.key_spend().spent_usd("k") == 1.0


def test_a_batch_redis_cannot_take_keeps_the_spend_for_later(redis_server):
    state = state_on(redis_server.url, probe_s=0.01)
    spend = state.key_spend()
    redis_server.stop()
    with state.link.batch():
        spend.charge("k", 1.5)
    assert not state.link.up and spend.spent_usd("k") == 1.5  # pending, believed locally
    redis_server.start()
    for _ in range(500):  # a probe, every 0.01 s in the background, finds it back
        if state.link.check():
            break
        time.sleep(0.01)
    assert state.link.up
    assert redis_server.client().get(SPENT_K) == "1500000"


def whole_request(config: Config, keys_path: Path, state: SharedState, route: str) -> Any:
    from llmrouter.policy.engine import RoutingPolicy
    from llmrouter.server.auth import KeyStore, Meter

    policy, keys = RoutingPolicy(config, state=state), KeyStore(keys_path)
    _, key = keys.create("k", tier="free", rpm=10**6, tpm=10**9, budget_usd=1e9)
    meter, target = Meter(keys, state), config.targets[config.table.targets_of("code")[0]]

    def one(n: int) -> None:
        req = Request.of({"messages": [{"role": "user", "content": "hi"}],
                          "metadata": {"key": key.id, "session": f"s{n}", "tier": "free"}})
        refusal, _ = read_all(state.link, [meter.admission(key), policy.prefetch(req)])  # as the server does
        assert refusal is None
        policy.before(req)
        policy.after(req, Decision(route=route, source="model", confidence=0.9, scores={route: 0.9}))
        policy.settle(req, target, 10, 1)
        meter.settle(key, 11, 0.000001)
    return one


@pytest.mark.parametrize("route, waits", [("chat", 1), ("code", 2)])
def test_a_whole_request_waits_for_one_round_trip_and_one_more_to_go_up_a_tier(
        redis_server, trips, default_config, tmp_path, route, waits):
    """With no read reused: the key meter's budget, token rate and request rate, the policy's
    spend caps and the session, all in one round trip. A decision above the base tier also reads
    the escalation window's rate (for the cap). The writes go unwaited, in three sends: the
    escalation window's count and the session; the ledger; the key's tokens and spend."""
    data = default_config.to_dict()
    data["tiers"] = {"order": ["cheap", "strong"]}
    for entry in data["routes"]:
        entry["tier"] = "strong" if entry["name"] == "code" else "cheap"
    data["escalation"] = {"max_rate": 1.0, "window_s": 600.0}
    data["budgets"] = {"per_key": 1e9, "per_tier": {"free": 1e9}, "window_s": 600.0}
    data["stickiness"] = {"enabled": True}
    for target in data["targets"].values():
        target["output_price"] = 1.0  # every answer costs: the ledger is charged
    state = state_on(redis_server.url, read_ttl_s=0.0)
    one = whole_request(Config.from_dict(data), tmp_path / "keys.json", state, route)
    one(0)
    waited, sent = trips.now()
    for n in range(1, 11):
        one(n)
    assert ((trips.waited - waited) / 10, (trips.sent - sent) / 10) == (waits, 3)


def test_a_request_the_budget_refuses_does_not_use_up_the_keys_request_rate(redis_server, tmp_path):
    from llmrouter.server.auth import KeyStore, Meter
    from llmrouter.server.wire import HTTPError

    keys = KeyStore(tmp_path / "keys.json")
    _, key = keys.create("k", rpm=5, budget_usd=1.0)
    meter = Meter(keys, state_on(redis_server.url, read_ttl_s=0.0))
    meter.admit(key)
    meter.settle(key, 10, 1.0)  # the budget is spent
    for _ in range(3):
        with pytest.raises(HTTPError) as refused:
            meter.admit(key)
        assert refused.value.code == "insufficient_quota"
    (counted, _), = meter.requests.w.sums([key.id])
    assert counted == 1


@pytest.mark.parametrize("session, waits, sends", [("new", 1, 3), ("same", 0, 2)])
def test_a_served_answer_far_from_its_limits_waits_only_for_a_session_it_has_not_seen(
        emu, redis_server, serve, trips, tmp_path, session, waits, sends):
    """Through the server, far below the key's budget and rates and the spend cap: those are
    answered from the counts this process read lately (each add brings its counter's new value
    back); a session this process did not serve lately is read, in one round trip. Unwaited: the
    request's count; the session's route, when it changed; the answer's charges (ledger, key
    tokens, key spend) together."""
    from llmrouter.router import Router
    from llmrouter.server import create_app
    from llmrouter.server.auth import KeyStore
    from llmrouter.testing import fleet
    from llmrouter.testing.fakes import FixedDecider

    data = fleet(emu, {"main": ["a"]}, a={"output_price": 1.0}).to_dict()
    data["budgets"] = {"per_key": 1e9, "window_s": 600.0}
    data["stickiness"] = {"enabled": True}
    data["state"] = {"url": redis_server.url, "read_ttl_s": 10.0}  # reusable reads reused: what is left is needed
    config = Config.from_dict(data)
    keys = KeyStore(tmp_path / "keys.json")
    secret, _ = keys.create("acme", budget_usd=1e9, rpm=10**6)
    with serve(create_app(Router(config, decider=FixedDecider("main"), cache=None), keys=keys)) as url:
        def ask(n: int) -> None:
            body = {"model": "router", "messages": [{"role": "user", "content": "hi"}],
                    "metadata": {"session": f"s{n}" if session == "new" else "s"}}
            r = httpx.post(f"{url}/v1/chat/completions", json=body, headers={"authorization": f"Bearer {secret}"})
            assert r.status_code == 200, r.text
        ask(0)
        waited, sent = trips.now()
        for n in range(1, 6):
            ask(n)
        assert ((trips.waited - waited) / 5, (trips.sent - sent) / 5) == (waits, sends)


def test_a_redis_that_hangs_costs_the_servers_read_one_timeout_and_later_reads_go_local(redis_server, trips):
    from llmrouter.state.aio import aread_all

    state = state_on(redis_server.url, timeout_ms=200.0, probe_s=60.0)
    spend = state.key_spend()
    spend.charge("k", 1.0)
    assert state.link.flush()

    async def twice() -> tuple[list[Any], list[Any], int]:
        first = await aread_all(state.link, [spend.spent_read("k")])
        waited = trips.waited
        second = await aread_all(state.link, [spend.spent_read("k")])
        return first, second, trips.waited - waited

    assert asyncio.run(twice()) == ([1.0], [1.0], 1)  # Redis answers each read
    redis_server.pause()
    try:
        first, second, asked = asyncio.run(twice())
    finally:
        redis_server.resume()
    assert not state.link.up and state.link.outages == 1
    assert asked == 0  # the first read's timeout marked Redis down: the second asked it nothing
    assert first == second == [1.0]  # Redis's last answer, as this process knows it
