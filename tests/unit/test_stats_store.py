"""The dashboard's store: windows, roll-up past retention, bounded rings, quantiles, persistence,
and a store whose file breaks never raises on the request path."""

from __future__ import annotations

import time

import pytest

from llmrouter.config import Config
from llmrouter.errors import ConfigError
from llmrouter.server.stats_recorder import Recorder
from llmrouter.server.stats_store import Event, StatsStore
from llmrouter.server.stats_view import BadWindow, snapshot


def event(ts: float, route: str = "cheap", **kw: object) -> Event:
    base = dict(ts=ts, route=route, target="a", surface="none", tenant="", source="model", status=200, cost=0.001,
                cost_top=0.01, decision_ms=20.0, e2e_ms=300.0, confidence=0.85)
    return Event(**{**base, **kw})  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path):
    s = StatsStore(tmp_path / "stats.sqlite", retention_s=30 * 86400, recent=5, flush_every_s=60)
    yield s
    s.close()


def test_windows_count_what_falls_in_them(store):
    now = time.time()
    for age in (10, 1000, 20_000, 200_000):
        store.record(event(now - age))
    counts = {w: snapshot(store, w, now)["totals"]["requests"] for w in ("5m", "1h", "24h", "all")}
    assert counts == {"5m": 1, "1h": 2, "24h": 3, "all": 4}
    with pytest.raises(BadWindow):
        snapshot(store, "1w", now)


def test_buckets_past_retention_roll_up_into_all_time(store):
    now = time.time()
    for day in range(40, 60):  # twenty old minutes, each its own bucket
        store.record(event(now - day * 86400))
    store.record(event(now))
    assert snapshot(store, "all", now)["totals"]["requests"] == 21
    assert snapshot(store, "24h", now)["totals"]["requests"] == 1
    minutes = store.query("SELECT DISTINCT minute FROM buckets")
    assert len(minutes) == 2  # the all-time bucket and this minute
    assert snapshot(store, "all", now)["routes"][0]["decision_ms"]["n"] == 21  # histograms roll up too


def test_the_recent_ring_is_bounded(store):
    now = time.time()
    for i in range(12):
        store.record(event(now, cost=i / 1000))
    recent = snapshot(store, "all", now)["recent"]
    assert [round(r["cost"] * 1000) for r in recent] == [11, 10, 9, 8, 7]
    assert len(store.query("SELECT id FROM recent")) == 5


def test_quantiles_are_within_their_bins(store):
    now = time.time()
    for ms in range(1, 101):
        store.record(event(now, decision_ms=float(ms), e2e_ms=float(ms * 10)))
    totals = snapshot(store, "5m", now)["totals"]
    assert totals["decision_ms"]["p50"] == pytest.approx(50, rel=0.1)
    assert totals["decision_ms"]["p95"] == pytest.approx(95, rel=0.1)
    assert totals["e2e_ms"]["p95"] == pytest.approx(950, rel=0.1)


def test_savings_and_errors_add_up(store):
    now = time.time()
    store.record(event(now, cost=0.002, cost_top=0.01, cost_base=0.004))
    store.record(event(now, status=503, cost=0.0, cost_top=0.0, confidence=None))
    t = snapshot(store, "5m", now)["totals"]
    assert (t["requests"], t["answers"], t["errors"]) == (2, 1, 1)
    assert t["saved_vs_top_usd"] == pytest.approx(0.008) and t["saved_vs_baseline_usd"] == pytest.approx(0.002)


def test_a_reopened_file_keeps_its_numbers(tmp_path):
    now = time.time()
    first = StatsStore(tmp_path / "s.sqlite", flush_every_s=60)
    first.record(event(now))
    first.close()
    second = StatsStore(tmp_path / "s.sqlite", flush_every_s=60)
    assert snapshot(second, "all", now)["totals"]["requests"] == 1
    second.close()


def test_a_failing_write_drops_its_batch_and_never_raises(store):
    now = time.time()
    store.record(event(now))
    store.flush()
    with store._db_lock:
        store.db.execute("DROP TABLE recent")  # the file changed under us
    store.record(event(now))  # the request path: no error
    store.flush()  # logged, and the whole batch rolled back
    assert store.query("SELECT SUM(requests) FROM buckets")[0][0] == 1


def test_an_unusable_path_falls_back_to_memory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    s = StatsStore(blocker / "stats.sqlite", flush_every_s=60)  # its folder is a file
    assert s.path is None
    s.record(event(time.time()))
    assert snapshot(s, "5m")["totals"]["requests"] == 1
    s.close()


def test_the_baseline_route_must_be_in_the_table():
    data = {"targets": {"a": {"provider": "openai", "model": "m", "base_url": "http://x"}},
            "routes": [{"name": "cheap", "description": "d", "targets": ["a"]}]}
    assert Config.from_dict({**data, "dashboard": {"baseline_route": "cheap"}}).dashboard.baseline_route == "cheap"
    with pytest.raises(ConfigError, match="baseline_route 'gold' is not a route"):
        Config.from_dict({**data, "dashboard": {"baseline_route": "gold"}})
    with pytest.raises(ConfigError, match="unknown key"):
        Config.from_dict({**data, "dashboard": {"baseline": "cheap"}})
    cfg = Config.from_dict({**data, "dashboard": {"baseline_route": "cheap", "request_text": True}})
    assert Config.from_dict(cfg.to_dict()).dashboard == cfg.dashboard


def test_the_recorder_never_fails_the_answer_it_counts():
    class Broken:
        def record(self, event):
            raise RuntimeError("disk on fire")

    recorder = Recorder(Broken(), lambda request: "none")  # type: ignore[arg-type]
    recorder.failed("cheap", None, 503, 0.1)  # logged, not raised
