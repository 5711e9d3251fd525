"""The shared-state pieces without Redis: [state] settings, the link's circuit (a stand-in client),
the local windows, and a breaker that shares its open state."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from structlog.testing import capture_logs

from llmrouter.config import Config, StateSettings
from llmrouter.errors import ConfigError
from llmrouter.fallback import CircuitBreaker
from llmrouter.state.link import Link, open_client
from llmrouter.state.windows import Buckets

redis = pytest.importorskip("redis")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FlakyClient:
    """Answers PING and `op`s while `up`; raises redis.ConnectionError otherwise."""

    def __init__(self) -> None:
        self.up, self.calls = True, 0

    def ping(self) -> bool:
        self.calls += 1
        if not self.up:
            raise redis.ConnectionError("refused")
        return True

    def close(self) -> None:
        pass


def link(client: Any, clock: Clock, url: str = "redis://:s3cret@cache:6379/0") -> Link:
    return Link(StateSettings(url=url, probe_s=2.0), client=client, clock=clock)


@pytest.mark.parametrize("body, problem", [
    ({}, "exactly one of url"),
    ({"url": "redis://a", "url_env": "X"}, "exactly one of url"),
    ({"url": "http://cache:6379"}, "must start with redis://"),
    ({"url": "redis://a", "timeout": 3}, "unknown key"),
])
def test_a_bad_state_section_is_refused_with_what_to_write(default_config, body, problem):
    with pytest.raises(ConfigError, match=problem):
        Config.from_dict({**default_config.to_dict(), "state": body})


def test_the_state_url_can_come_from_the_environment_and_never_shows_its_password(monkeypatch):
    monkeypatch.setenv("LLMR_REDIS", "redis://:hunter2@cache:6379/1")
    s = StateSettings(url_env="LLMR_REDIS")
    assert s.resolved_url() == "redis://:hunter2@cache:6379/1" and s.safe_url() == "$LLMR_REDIS"
    assert StateSettings(url="redis://user:hunter2@cache/0").safe_url() == "redis://***@cache/0"
    monkeypatch.delenv("LLMR_REDIS")
    with pytest.raises(ConfigError, match="not set"):
        s.resolved_url()


def test_without_the_redis_package_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)
    with pytest.raises(ConfigError, match=r"pip install 'llmrouter\[redis\]'"):
        open_client(StateSettings(url="redis://localhost"))


def test_redis_down_gives_the_local_default_with_one_warning_then_a_probe_rejoins():
    client, clock, rejoined = FlakyClient(), Clock(), []
    lk = link(client, clock)
    lk.on_rejoin.append(lambda c: rejoined.append(c))
    client.up = False
    with capture_logs() as logs:
        assert [lk.call(lambda r: r.ping(), "local") for _ in range(5)] == ["local"] * 5
        assert client.calls == 1  # down: no more calls until the next probe
        clock.now = 2.5
        client.up = True
        assert lk.call(lambda r: "shared", "local") == "local"  # the probe runs beside the requests
        assert lk.probing is not None
        lk.probing.join(5)
        assert lk.call(lambda r: "shared", "local") == "shared" and rejoined == [client]
    assert [e["log_level"] for e in logs] == ["warning", "info"]
    assert "s3cret" not in repr(logs) and logs[0]["url"] == "redis://***@cache:6379/0"


def test_a_failed_probe_waits_for_the_next_one():
    client, clock = FlakyClient(), Clock()
    lk = link(client, clock)
    client.up = False
    lk.call(lambda r: r.ping(), None)
    clock.now = 2.5
    assert lk.call(lambda r: r.ping(), "local") == "local"
    assert lk.probing is not None
    lk.probing.join(5)
    assert client.calls == 2 and not lk.up  # the probe failed
    clock.now = 3.0
    assert lk.call(lambda r: r.ping(), "local") == "local" and client.calls == 2  # next probe at 4.5


def test_no_request_waits_for_a_probe_of_a_redis_that_hangs():
    import threading

    answer, client, clock = threading.Event(), FlakyClient(), Clock()
    lk = link(client, clock)
    client.up = False
    lk.call(lambda r: r.ping(), None)
    client.up, client.ping = True, lambda: answer.wait(5)  # Redis takes the connection, then hangs
    clock.now = 2.5
    assert [lk.call(lambda r: "shared", "local") for _ in range(3)] == ["local"] * 3
    assert lk.probing is not None and lk.probing.is_alive()  # one probe, still waiting
    answer.set()
    lk.probing.join(5)
    assert lk.call(lambda r: "shared", "local") == "shared"


def test_local_windows_sum_the_last_buckets_and_drop_older_ones():
    b = Buckets(n=3)
    b.add("k", 10, 1.0)
    b.add("k", 11, 2.0)
    b.add("k", 12, 4.0)
    assert b.sum("k", 12) == (7.0, 10)
    assert b.sum("k", 13) == (6.0, 11)  # bucket 10 left the window
    assert b.sum("other", 13) == (0.0, -1)


class Flag:
    def __init__(self) -> None:
        self.until, self.raised, self.lowered = 0.0, 0, 0

    def raise_for(self, seconds: float) -> None:
        self.raised += 1

    def lower(self) -> None:
        self.lowered += 1

    def remaining(self) -> float:
        return self.until


def test_a_shared_breaker_tells_others_when_it_opens_and_closes():
    clock, flag = Clock(), Flag()
    b = CircuitBreaker(failures=2, cooldown_s=10, clock=clock)
    b.share(flag)
    b.failure()
    assert flag.raised == 0
    b.failure()
    assert b.state == "open" and flag.raised == 1
    clock.now = 10.0
    assert b.allow() and b.state == "half_open"
    b.success()
    assert b.state == "closed" and flag.lowered == 1
    b.success()
    assert flag.lowered == 1  # closed already: nothing to tell


def test_a_breaker_opened_elsewhere_is_open_here_for_the_rest_of_its_cooldown():
    clock, flag = Clock(), Flag()
    b = CircuitBreaker(failures=5, cooldown_s=10, clock=clock)
    b.share(flag)
    flag.until = 4.0
    assert b.state == "open" and not b.allow() and b.retry_in() == pytest.approx(4.0)
    clock.now = 4.0
    flag.until = 0.0
    assert b.allow() and b.state == "half_open"


def test_headroom_answers_here_only_from_a_fresh_read_far_below_the_limit():
    from llmrouter.state.headroom import Headroom

    known = Headroom(read_ttl_s=1.0, local_below=0.5)
    assert known.estimate("k", 0.0) is None and not known.room(None, 100)
    known.saw("k", 40.0, at=10.0, oldest=7)
    assert known.estimate("k", 10.5) == (40.0, 7) and known.room((40.0, 7), 100)
    known.sending("k", 15.0)  # this process's add, its answer not back yet: counted in
    assert known.estimate("k", 10.5) == (55.0, 7) and not known.room((55.0, 7), 100)
    known.sending("k", -5.0)  # a give-back is not counted until its answer: the estimate stays high
    known.answered("k", 15.0)
    assert known.estimate("k", 10.5) == (40.0, 7)
    known.saw("k", 30.0, at=9.0)  # an answer older than the one kept
    assert known.estimate("k", 10.5) == (40.0, 7)
    assert known.estimate("k", 11.0) is None  # read_ttl_s old: read again


def test_headroom_keeps_only_the_names_used_last():
    from llmrouter.state.headroom import Headroom

    known = Headroom(read_ttl_s=1.0, local_below=0.5, max_names=2)
    for n, name in enumerate(("a", "b", "c")):
        known.saw(name, 1.0, at=float(n))
    assert list(known.read) == ["b", "c"] and known.estimate("a", 2.0) is None
