"""Metrics, splits and reports of llmrouter.evaluate (no model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrouter.quality import evaluate as ev
from llmrouter.config import Config
from llmrouter.errors import ConfigError

ROUTES = ("a", "b", "c")


def test_metrics_on_a_known_confusion():
    y = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 1, 0]
    m = ev.metrics(y, pred, [0.9] * 6, ROUTES)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["confusion"] == [[2, 1, 0], [0, 2, 0], [1, 0, 0]]
    assert m["per_route"]["a"]["precision"] == pytest.approx(2 / 3)
    assert m["per_route"]["a"]["recall"] == pytest.approx(2 / 3)
    assert m["per_route"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["per_route"]["b"]["recall"] == 1.0
    assert m["per_route"]["c"]["f1"] == 0.0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0) / 3)
    assert m["ece"] == pytest.approx(abs(0.9 - 4 / 6))


def test_macro_f1_ignores_routes_absent_from_the_data():
    cm = ev.confusion([0, 1], [0, 1], 5)
    assert ev.macro_f1(cm) == 1.0


@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=200))
@settings(max_examples=60, deadline=None)
def test_ece_is_a_weighted_gap_within_bounds(rows):
    conf = np.array([r[0] for r in rows])
    correct = np.array([r[1] for r in rows])
    e = ev.ece(conf, correct)
    assert 0.0 <= e <= 1.0
    bins = ev.reliability(conf, correct)
    assert sum(b["count"] for b in bins) == len(rows)


def test_perfect_calibration_has_zero_ece():
    conf = np.array([0.25] * 4 + [0.75] * 4)
    correct = np.array([1, 0, 0, 0, 1, 1, 1, 0], dtype=bool)
    assert ev.ece(conf, correct) == pytest.approx(0.0)


def test_roc_auc():
    assert ev.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert ev.roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert ev.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5


@given(st.lists(st.integers(0, 4), min_size=10, max_size=120), st.integers(2, 6), st.integers(0, 3))
@settings(max_examples=40, deadline=None)
def test_stratified_folds_partition_and_balance(labels, k, seed):
    folds = ev.stratified_folds(labels, k, seed)
    tests = np.concatenate([te for _, te in folds])
    assert sorted(tests.tolist()) == list(range(len(labels)))
    lab = np.asarray(labels)
    for tr, te in folds:
        assert not set(tr) & set(te)
        for c in set(labels):
            per_fold = (lab[te] == c).sum()
            assert abs(per_fold - (lab == c).sum() / k) <= 1


def test_source_folds_hold_out_whole_sources_and_only_covered_labels():
    labels = ["x", "x", "y", "y", "z", "x", "y"]
    sources = ["s1", "s1", "s1", "s2", "s2", "s3", "s3"]
    folds = ev.source_folds(labels, sources, seed=1)
    assert folds
    lab, src = np.asarray(labels), np.asarray(sources)
    for tr, te in folds:
        assert not set(src[tr]) & set(src[te])
        assert set(lab[te]) <= set(lab[tr])
    # z only occurs in s2: never a test row when s2 is held out
    assert all("z" not in set(lab[te]) for _, te in folds)


def test_few_examples_names_thin_routes():
    assert ev.few_examples(["a"] * 9 + ["b"] * 2, ROUTES, minimum=8) == {"b": 2, "c": 0}


def test_load_records_accepts_text_and_messages(tmp_path):
    p = tmp_path / "d.jsonl"
    rows = [{"prompt": "hello", "label": "chat"},
            {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "2+2?"}], "label": "math", "source": "mine"},
            {"prompt": [{"role": "user", "content": "hi"}], "label": "chat"}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    recs = ev.load_records(p)
    assert [r.text for r in recs] == ["hello", "2+2?", "hi"]
    assert recs[1].source == "mine"


@pytest.mark.parametrize("line,msg", [("{not json", "not JSON"), ('{"prompt": "x"}', "label"),
                                      ('{"prompt": "", "label": "a"}', "user message")])
def test_load_records_names_the_bad_line(tmp_path, line, msg):
    p = tmp_path / "d.jsonl"
    p.write_text('{"prompt": "ok", "label": "a"}\n' + line + "\n")
    with pytest.raises(ConfigError, match=f"d.jsonl:2: .*{msg}"):
        ev.load_records(p)


def test_unknown_labels_are_refused():
    with pytest.raises(ConfigError, match="nope"):
        ev.check_labels([ev.Record("t", "nope")], ROUTES)


def test_cost_uses_the_first_targets_prices():
    cfg = Config.from_dict({
        "targets": {"cheap": {"provider": "local", "model": "m", "input_price": 1.0, "output_price": 2.0},
                    "dear": {"provider": "local", "model": "m", "input_price": 10.0, "output_price": 30.0}},
        "routes": [{"name": "a", "description": "A", "targets": ["cheap", "dear"]},
                   {"name": "b", "description": "B", "targets": ["dear"]}],
    })
    assert ev.route_cost(cfg, "a", 1000, 500) == pytest.approx((1000 * 1 + 500 * 2) / 1e6)
    assert ev.route_cost(cfg, "b", 1000, 500) == pytest.approx((1000 * 10 + 500 * 30) / 1e6)


def test_report_writes_markdown_json_and_plots(tmp_path):
    m1 = ev.metrics([0, 1, 2, 1], [0, 1, 1, 1], [0.9, 0.8, 0.4, 0.7], ROUTES,
                    latency_ms=[10, 12, 30, 11], cost_usd=[0.001] * 4, deciders=["cheap:chars", "fitted", "fitted", "fitted"])
    m2 = ev.metrics([0, 1, 2, 1], [0, 0, 2, 1], [0.5, 0.5, 0.5, 0.5], ROUTES, latency_ms=[9, 9, 9, 9])
    files = ev.write_report({"one": m1, "two": m2}, tmp_path / "rep")
    names = {f.name for f in files}
    assert {"report.md", "report.json", "reliability.png", "latency.png",
            "confusion_one.png", "confusion_two.png"} <= names
    assert all(f.stat().st_size > 0 for f in files)
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| one | 0.750 |" in md
    assert "| cheap:chars | 25.0% | 1.000 |" in md and "| fitted | 75.0% | 0.667 |" in md  # each stage's share
    assert m1["stages"] == {"cheap:chars": {"share": 0.25, "accuracy": 1.0},
                            "fitted": {"share": 0.75, "accuracy": pytest.approx(2 / 3)}}
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert "cost_per_1k_usd" not in data["two"]
    assert data["one"]["cost_per_1k_usd"] == pytest.approx(1.0)
