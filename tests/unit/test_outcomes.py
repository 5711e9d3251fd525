"""Learning from outcomes (no model): records, the quality-vs-cost curve and its baselines, the
operating point that never loses to the best single target by more than noise, the utility head."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmrouter.config import Config
from llmrouter.errors import ConfigError
from llmrouter.quality import outcomes as oc
from llmrouter.quality.outcome_tune import route_of_targets, utility_head

TABLE = """
[router]
default_route = "big"
[targets.small]
provider = "local"
model = "smollm2-135m"
[targets.large]
provider = "local"
model = "smollm2-135m"
[[routes]]
name = "cheap"
description = "easy"
targets = ["small"]
[[routes]]
name = "big"
description = "hard"
targets = ["large", "small"]
"""


def world(n=600, informative=True, seed=0):
    """Two targets: `small` is cheap, `large` dear; features say which requests `small` fails."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 6))
    hard = x[:, 0] > 0 if informative else rng.random(n) < 0.5
    q = np.zeros((n, 2))
    q[:, 0] = np.where(hard, rng.random(n) < 0.2, rng.random(n) < 0.9)  # small
    q[:, 1] = rng.random(n) < 0.85  # large
    c = np.column_stack([np.full(n, 1e-4), np.full(n, 1e-3)])
    return x, q, c


def oof(x, q, k=5):
    folds = [(np.flatnonzero(np.arange(len(q)) % k != f), np.flatnonzero(np.arange(len(q)) % k == f)) for f in range(k)]
    return oc.out_of_fold_scores(x, q, folds)


def test_an_informative_router_beats_every_single_target_and_the_random_mix():
    x, q, c = world()
    cv = oc.curve(oof(x, q), q, c, ["small", "large"])
    s = cv.summary
    assert s["chosen"]["quality"] > s["best_single"]["quality"] + 0.015
    assert s["area"]["router"] > s["area"]["random"] and 0 < s["apgr"] <= 1
    assert s["area"]["oracle"] >= s["area"]["router"]
    assert s["cost_to_95pct_best"] is not None and s["cost_to_95pct_best"] < s["best_single"]["cost"]


@pytest.mark.parametrize("seed", range(5))
def test_with_nothing_to_learn_the_router_never_loses_to_the_best_single_target_by_more_than_noise(seed):
    rng = np.random.default_rng(seed)
    n = 500
    x = rng.normal(0, 1, (n, 6))  # features say nothing
    q = np.column_stack([rng.random(n) < 0.8, rng.random(n) < 0.6]).astype(float)  # one target is
    c = np.column_stack([np.full(n, 1e-4), np.full(n, 1e-3)])  # better and cheaper
    cv = oc.curve(oof(x, q), q, c, ["good", "bad"])
    gap = cv.summary["chosen_vs_best_single"]
    assert cv.summary["best_single"]["target"] == "good"
    assert gap["gain"] >= -oc.NOISE_SE * gap["se"] - 1e-12


def test_a_budget_and_a_floor_pick_their_points():
    x, q, c = world()
    pred = oof(x, q)
    tight = oc.curve(pred, q, c, ["small", "large"], max_cost=2e-4)
    assert tight.chosen.cost <= 2e-4
    floor = oc.curve(pred, q, c, ["small", "large"], min_quality=0.8)
    assert floor.chosen.quality >= 0.8
    assert floor.chosen.cost == min(p.cost for p in floor.router if p.quality >= 0.8)


def test_outcome_records_load_and_bad_ones_say_what_to_do(tmp_path):
    good = tmp_path / "o.jsonl"
    good.write_text(json.dumps({"prompt": "hi", "source": "a",
                                "outcomes": {"x": {"score": 1, "cost_usd": 0.1}, "y": {"score": 0.5}}}) + "\n")
    recs = oc.load_outcomes(good)
    assert recs[0].scores == {"x": 1.0, "y": 0.5} and recs[0].costs["y"] == 0.0 and oc.is_outcomes_file(good)
    bad = tmp_path / "b.jsonl"
    bad.write_text(json.dumps({"prompt": "hi", "outcomes": {"x": {"score": 3}}}) + "\n")
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        oc.load_outcomes(bad)
    bad.write_text(json.dumps({"prompt": "hi", "label": "code"}) + "\n")
    assert not oc.is_outcomes_file(bad)
    with pytest.raises(ConfigError, match="not an outcome record"):
        oc.load_outcomes(bad)


def test_the_utility_head_routes_each_request_to_the_route_of_its_best_target(tmp_path):
    p = tmp_path / "t.toml"
    p.write_text(TABLE)
    cfg = Config.load(p)
    assert route_of_targets(cfg, ["small", "large"]) == {"small": "cheap", "large": "big"}
    with pytest.raises(ConfigError, match="first target"):
        route_of_targets(cfg, ["small", "gpt"])
    x, q, c = world()
    cv = oc.curve(oof(x, q), q, c, ["small", "large"])
    model = oc.ScoreModel.fit(x, q)
    head = utility_head(cfg, model, cv, ["small", "large"], ("mean",), c.mean(0), "ab" * 32, "k" * 16)
    routes = head.head_proba({"mean": x}).argmax(1)
    want = oc.choose(model.predict(x), c.mean(0), cv.chosen.lam, cv.chosen.margin, 1)
    expected = np.array([cfg.table.names.index({0: "cheap", 1: "big"}[int(t)]) for t in want])
    assert (routes == expected).all()


def test_feedback_events_and_kept_prompts_become_outcome_records(tmp_path):
    events = [{"event": "feedback", "id": "a", "score": 1.0, "target": "small"},
              {"event": "completion", "target": "small"},
              {"event": "feedback", "id": "b", "score": 0.0, "target": "large"},
              {"event": "feedback", "id": "zzz", "score": 1.0, "target": "large"}]
    lines, missing = oc.from_feedback(events, {"a": "hi", "b": "prove it"}, lambda t, p: 0.5 if t == "large" else 0.1)
    assert missing == 1 and len(lines) == 2
    assert lines[1] == {"prompt": "prove it", "source": "feedback",
                        "outcomes": {"large": {"score": 0.0, "cost_usd": 0.5}}}
    f = tmp_path / "o.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    targets, q, c = oc.matrices(oc.load_outcomes(f))  # partial records load; no complete row yet
    assert targets == ["large", "small"] and len(oc.complete_rows(q)) == 0
