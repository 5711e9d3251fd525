"""Two servers (or two routers), each with its own connection and local state, sharing one real
redis-server: key budgets and rate limits, escalation caps, stickiness and open breakers hold
across them; Redis stopped mid-run fails no request, and when it is back they rejoin."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import httpx
import pytest
import structlog

from llmrouter.config import Config
from llmrouter.router import Router
from llmrouter.server import create_app
from llmrouter.server.auth import KeyStore
from llmrouter.testing import Behavior, Emulator, FakeRouter, fleet
from llmrouter.testing.fakes import FixedDecider
from llmrouter.types import Request

pytest.importorskip("redis")


def shared(config: Config, url: str, **state: Any) -> Config:
    """`config` with [state] on `url` (reads never reused unless asked: the assertions are exact)."""
    return Config.from_dict({**config.to_dict(), "state": {"url": url, "read_ttl_s": 0.0, "probe_s": 0.2, **state}})


def tiered(emu: Emulator, url: str, **policy: Any) -> Config:
    """'small' (tier cheap, target a) and 'big' (tier strong, target b), with `policy` sections."""
    return Config.from_dict({
        "router": {"default_route": "small", "cache": False},
        "targets": {n: {"provider": "openai", "model": f"{n}-model", "base_url": emu.base_url(n)} for n in "ab"},
        "routes": [{"name": "small", "description": "easy requests", "targets": ["a"], "tier": "cheap"},
                   {"name": "big", "description": "hard requests", "targets": ["b"], "tier": "strong"}],
        "tiers": {"order": ["cheap", "strong"]},
        "state": {"url": url, "read_ttl_s": 0.0, "probe_s": 0.2},
        **policy,
    })


def two_routers(config: Config, first: str, second: str) -> tuple[Router, Router]:
    return (Router(config, decider=FixedDecider(first), cache=None),
            Router(config, decider=FixedDecider(second), cache=None))


def ask(url: str, key: str, text: str = "hello", **extra: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", timeout=30, headers={"authorization": f"Bearer {key}"},
                      json={"model": "router", "messages": [{"role": "user", "content": text}], **extra})


def test_a_key_budget_is_spent_once_across_two_servers(emu, redis_server, serve, tmp_path):
    config = shared(fleet(emu, {"main": ["a"]}, a={"output_price": 1_000_000.0}), redis_server.url)  # $1 a token
    emu.set_default("a", Behavior(text="one two three"))  # $3 an answer
    keys = KeyStore(tmp_path / "keys.json")
    secret, _ = keys.create("acme", budget_usd=10.0)
    with ExitStack() as stack:
        urls = [stack.enter_context(serve(create_app(FakeRouter(config), keys=KeyStore(keys.path)))) for _ in "12"]
        codes = [ask(urls[i % 2], secret).status_code for i in range(8)]
    # one request at a time: the 4th brings the spend to $12 >= $10, and no server answers after it
    assert codes == [200] * 4 + [429] * 4
    assert int(redis_server.client().get("llmr:key:spent_micro_usd:" + secret.split("-")[1])) == 12_000_000


def test_a_key_rate_limit_counts_requests_on_every_server(emu, redis_server, serve, tmp_path):
    config = shared(fleet(emu, {"main": ["a"]}), redis_server.url)
    keys = KeyStore(tmp_path / "keys.json")
    secret, _ = keys.create("acme", rpm=3)
    with ExitStack() as stack:
        urls = [stack.enter_context(serve(create_app(FakeRouter(config), keys=KeyStore(keys.path)))) for _ in "12"]
        codes = [ask(urls[i % 2], secret).status_code for i in range(6)]
    assert codes == [200, 200, 200, 429, 429, 429]


def test_the_escalation_cap_is_held_across_processes(emu, redis_server):
    # 10% of decisions may go up, counted as if there were at least 20: two escalations in all,
    # not two per process
    config = tiered(emu, redis_server.url, escalation={"max_rate": 0.1, "min_requests": 20})
    one, two = two_routers(config, "big", "big")
    routes = [(one if i % 2 else two).decide(Request.of("a hard question")).route for i in range(10)]
    assert routes.count("big") == 2 and routes.count("small") == 8


def test_a_session_stays_on_its_route_when_its_next_turn_reaches_another_process(emu, redis_server):
    config = tiered(emu, redis_server.url, stickiness={"enabled": True})
    one, two = two_routers(config, "big", "small")
    turn = {"messages": [{"role": "user", "content": "hi"}], "metadata": {"session": "conversation-1"}}
    assert one.decide(Request.of(turn)).route == "big"
    second = two.decide(Request.of(turn))
    assert second.route == "big" and "sticky" in second.policy
    assert two.decide(Request.of({**turn, "metadata": {"session": "conversation-2"}})).route == "small"


def test_a_breaker_one_process_opens_is_open_in_the_other(emu, redis_server):
    table = {**fleet(emu, {"main": ["a", "b"]}).to_dict(), "fallback": {"breaker_failures": 2, "max_retries": 0}}
    config = shared(Config.from_dict(table), redis_server.url)
    emu.set_default("a", Behavior(status=500))
    one, two = FakeRouter(config), FakeRouter(config)
    for _ in range(2):
        assert one.complete("hello").target == "b"
    assert one.chain.breakers["a"].state == "open"
    calls_to_a = len(emu.seen("a"))
    done = two.complete("hello")
    assert done.target == "b" and len(emu.seen("a")) == calls_to_a  # skipped: never called
    assert two.chain.breakers["a"].state == "open"


def test_losing_redis_fails_no_request_and_the_servers_rejoin_when_it_is_back(emu, redis_server, serve, tmp_path):
    config = shared(fleet(emu, {"main": ["a"]}, a={"output_price": 1_000_000.0}), redis_server.url)
    emu.set_default("a", Behavior(text="one"))  # $1 an answer
    keys = KeyStore(tmp_path / "keys.json")
    secret, _ = keys.create("acme", budget_usd=100.0, rpm=1000)
    routers = [FakeRouter(config) for _ in "12"]
    with structlog.testing.capture_logs() as logs, ExitStack() as stack:
        urls = [stack.enter_context(serve(create_app(r, keys=KeyStore(keys.path)))) for r in routers]
        codes = [ask(u, secret).status_code for u in urls]
        redis_server.stop()
        down = [ask(urls[i % 2], secret).status_code for i in range(6)]
        redis_server.start()
        for _ in range(200):  # until each has probed Redis again (every 0.2 s) and rejoined
            if all(r.state is not None and r.state.link.up for r in routers):
                break
            codes += [ask(urls[0], secret).status_code, ask(urls[1], secret).status_code]
        else:
            pytest.fail("the servers did not rejoin Redis")
        codes += [ask(u, secret).status_code for u in urls]
    assert down == [200] * 6 and set(codes) == {200}  # local state answered while Redis was down
    events = [e["event"] for e in logs]
    assert events.count("shared state unreachable: this process uses its local state until it is back") == 2
    assert events.count("shared state back: rejoined") == 2
    # what was charged while Redis was down reached it when the servers rejoined. (The fixture's
    # Redis keeps nothing on disk: the two answers charged before it stopped went with it.)
    spent = int(redis_server.client().get("llmr:key:spent_micro_usd:" + secret.split("-")[1]))
    assert spent == (len(codes) - 2 + len(down)) * 1_000_000


def test_a_decision_one_process_cached_is_a_cache_hit_in_the_other(emu, redis_server, tmp_path):
    from llmrouter.cache import DecisionCache

    config = tiered(emu, redis_server.url)
    config = Config.from_dict({**config.to_dict(), "state": {"url": redis_server.url, "decision_cache": True}})
    one, two = (Router(config, decider=FixedDecider(route), cache=DecisionCache(tmp_path / route))
                for route in ("big", "small"))
    assert one.decide("a question worth caching").route == "big"
    again = two.decide("a question worth caching")
    assert again.source == "cache" and again.route == "big"
    assert two.decide("another question").source == "model"


def test_a_sessions_route_is_rewritten_when_it_changes_or_its_ttl_needs_refreshing(redis_server):
    from llmrouter.config import StateSettings
    from llmrouter.state import SharedState

    now = [0.0]
    state = SharedState(StateSettings(url=redis_server.url))
    sessions = state.sessions("t", ttl_s=100.0, max_sessions=10)
    sessions.clock = lambda: now[0]
    raw, key = redis_server.client(), sessions._key("s1")
    sessions.set("s1", "code")
    assert raw.get(key) == "code"
    raw.delete(key)
    sessions.set("s1", "code")  # unchanged, written 0 s ago: no round trip
    assert raw.get(key) is None
    sessions.set("s1", "math")  # changed: written
    assert raw.get(key) == "math"
    raw.delete(key)
    now[0] = 11.0  # past a tenth of the TTL: written again, which refreshes the TTL
    sessions.set("s1", "math")
    assert raw.get(key) == "math" and raw.pttl(key) > 90_000


def test_a_token_rate_check_reads_the_window_and_counts_nothing(redis_server):
    from llmrouter.config import StateSettings
    from llmrouter.state import SharedState

    tokens = SharedState(StateSettings(url=redis_server.url, read_ttl_s=0.0)).request_rate("tpm")
    assert tokens.admit("k", 100, weight=0) is None
    tokens.add("k", 100)
    wait = tokens.admit("k", 100, weight=0)
    assert wait is not None and 0 < wait <= 61
    assert tokens.admit("other", 100, weight=0) is None
