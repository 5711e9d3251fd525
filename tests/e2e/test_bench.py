"""`llmrouter bench` end to end on the real model, in its smallest setting (no timing asserted)."""

import json

import pytest
from typer.testing import CliRunner

from llmrouter.cli import app
from llmrouter.cli.bench import bench_lib
from llmrouter.config import Config

breakeven = bench_lib("breakeven")  # the measuring code lives in bench/llmrouter_bench
measure = bench_lib("measure")

pytestmark = pytest.mark.model


def test_bench_writes_json_markdown_and_plot(tmp_path):
    r = CliRunner().invoke(app, ["bench", "--limit", "3", "--repeats", "1", "--threads", "1",
                                 "--no-paths", "--no-contention", "--no-cold", "--no-server",
                                 "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "latency.json").read_text())
    run = data["runs"][0]
    assert run["threads"] == 1 and run["prefix_tokens"] > 100 and 0 < run["suffix_tokens"] < 10
    rows = run["warm"]["rows"]
    assert len(rows) == 3 and all(x["optimised_ms"] > 0 and x["floor_ms"] > 0 for x in rows)
    assert run["cache_hit"]["n"] == 200
    md = (tmp_path / "latency.md").read_text()
    assert "| smollm2-135m | 1 | all | 3 |" in md
    assert (tmp_path / "latency.png").stat().st_size > 1000


def test_bad_threads_is_a_clean_error():
    r = CliRunner().invoke(app, ["bench", "--threads", "one"])
    assert r.exit_code == 1 and "--threads takes numbers" in r.output


def test_aggregate_buckets_and_ratios():
    rows = [{"tokens": t, "bucket": measure.bucket_of(t), "optimised_ms": 2.0 * t, "floor_ms": float(t)}
            for t in (5, 15, 30, 45, 100)]
    agg = measure.aggregate(rows)
    assert set(agg) == {"all", "short", "medium", "long", "10-60 tokens"}
    assert agg["all"]["ratio_p50"] == pytest.approx(2.0)
    assert agg["10-60 tokens"]["optimised"]["n"] == 3


def test_breakeven_through_the_server(tmp_path):
    cfg = Config.load("examples/priced.toml")
    assert breakeven.priced(cfg) and not breakeven.priced(Config.load())
    b = breakeven.run(cfg, n=3)
    assert b["requests"] == 3 and sum(b["target_share"].values()) == 3
    assert b["baseline_target"] == "frontier"
    assert b["cost_per_1k_routed"] <= b["cost_per_1k_baseline"]
    assert "router tax p50" in breakeven.markdown(b)


def test_bench_under_load_reports_who_decided_at_each_level(tmp_path):
    r = CliRunner().invoke(app, ["bench", "--concurrency", "1,16", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "load.json").read_text())
    assert [lv["concurrency"] for lv in data["levels"]] == [1, 16]
    for lv in data["levels"]:
        assert lv["outcomes"] == {"ok": lv["requests"]}  # every request one complete answer
        assert sum(lv["decided"].values()) == lv["requests"] and lv["decided"]["default"] == 0
        assert lv["decided"]["rule"] == lv["requests"] // 5  # the pinned ones, never the default route
        assert lv["decided"]["cache"] > 0 and lv["decided"]["model"] > 0
        assert lv["decisions_per_s"] > 0 and lv["added_p50_ms"] is not None
    assert "| 16 | 40 |" in (tmp_path / "load.md").read_text() and (tmp_path / "load.png").stat().st_size > 1000


def test_bad_concurrency_is_a_clean_error():
    r = CliRunner().invoke(app, ["bench", "--concurrency", "8,lots"])
    assert r.exit_code == 1 and "--concurrency takes positive numbers" in r.output


def test_the_failover_bench_table_loads_and_a_short_stream_counts_as_truncated():
    failover = bench_lib("failover")
    cfg = Config.from_dict(failover.table("http://127.0.0.1:9", continue_streams=True))
    assert len(cfg.table.names) == len(failover.FAULTS) + 1 and cfg.targets["ok"].accepts_prefill
    whole = [{"choices": [{"delta": {"content": failover.TEXT}, "finish_reason": "stop"}],
              "llmrouter": {"continued_by": "ok"}}]
    half = [{"choices": [{"delta": {"content": failover.TEXT[:20]}, "finish_reason": "stop"}]}]
    as_sse = lambda chunks: "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"  # noqa: E731
    assert failover._stream_end(as_sse(whole), 0.1, "f0") == {"end": "complete", "s": 0.1, "by": "f0 -> ok"}
    assert failover._stream_end(as_sse(half), 0.1, "f0")["end"] == "truncated"
    assert failover._stream_end('data: {"error": {}}\n\n', 0.1, "f0")["end"] == "error"
