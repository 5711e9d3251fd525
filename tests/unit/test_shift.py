"""Calibration under shift: the familiarity (out-of-distribution) signal, grouped folds, the
temperature and alpha fitted on them, and tune's comparison with the current head (no model)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from llmrouter.head.familiarity import Familiarity
from llmrouter.head.fitted import FittedHead
from llmrouter.quality import evaluate as ev
from llmrouter.quality import shift
from llmrouter.quality.tune import compare_with_current

ROUTES = ("code", "math", "chat")
SHA, KEY = "ab" * 32, "k" * 16


def blobs(n=300, d=10, seed=0, offset=0.0):
    """Three routes as Gaussian blobs; `offset` moves every request away from the training data."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.random.default_rng(7).normal(0, 2.5, (3, d))
    x = centers[y] + rng.normal(0, 1, (n, d)) + offset
    return {"mean": x, "last": x[:, ::-1].copy()}, y


def test_familiarity_ratio_is_about_one_near_the_training_rows_and_grows_far_from_them():
    f, _ = blobs()
    fam = Familiarity.fit(f, ("mean", "last"))
    near, _ = blobs(seed=1)
    far, _ = blobs(seed=1, offset=6.0)
    assert 0.7 < np.median(fam.ratio(near)) < 1.4
    assert np.median(fam.ratio(far)) > 2 * np.median(fam.ratio(near))
    assert (fam.factor(far) == 1).all()  # alpha 0: no effect
    assert (replace(fam, alpha=1.0).factor(far) > 1).all()


def test_a_head_with_familiarity_is_less_sure_far_from_its_data_and_round_trips(tmp_path):
    f, y = blobs()
    h = FittedHead.calibration(np.zeros((len(y), 3)), y, ROUTES, model_sha256=SHA, feature_key=KEY)
    h = h.with_head(f, y, blocks=("mean", "last"), C=1.0)
    fam = replace(Familiarity.fit(f, ("mean", "last")), alpha=2.0)
    far, _ = blobs(seed=2, offset=6.0)
    plain, soft = h.head_proba(far).max(1), replace(h, familiarity=fam).head_proba(far).max(1)
    assert (soft <= plain + 1e-12).all() and soft.mean() < plain.mean() - 0.05
    p = replace(h, familiarity=fam).save(tmp_path / "h.head.npz")
    back = FittedHead.load(p)
    assert back.familiarity is not None and back.familiarity.alpha == 2.0
    assert np.allclose(back.head_proba(far), replace(h, familiarity=fam).head_proba(far), atol=1e-4)


def test_alpha_is_fitted_when_far_rows_are_the_wrong_ones():
    rng = np.random.default_rng(0)
    n = 2000
    y = rng.integers(0, 3, n)
    ratio = rng.uniform(0.5, 4.0, n)
    logits = rng.normal(0, 0.3, (n, 3))
    logits[np.arange(n), y] += 4.0
    wrong = (ratio > 2.0) & (rng.random(n) < 0.6)  # far requests: often wrong, yet as confident
    logits[wrong] = np.roll(logits[wrong], 1, axis=1)
    cal = shift.fit(logits, y, ratio)
    assert cal.alpha > 0
    p_plain = shift.apply(logits, None, shift.fit(logits, y, None))
    p_ood = shift.apply(logits, ratio, cal)
    ok = p_ood.argmax(1) == y
    nll = lambda p: -np.mean(np.log(p[np.arange(n), y]))  # noqa: E731
    assert nll(p_ood) < nll(p_plain)
    # "unsure" now means something: confidence separates right from wrong decisions
    assert ev.roc_auc(ok, p_ood.max(1)) > ev.roc_auc(ok, p_plain.max(1)) + 0.1


def test_cross_fitted_probabilities_cover_every_fold_row():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 150)
    logits = rng.normal(0, 1, (150, 3))
    folds = ev.stratified_folds(y, 3, 0)
    p = shift.cross_fitted(logits, y, None, folds)
    assert not np.isnan(p).any() and np.allclose(p.sum(1), 1)


def test_cluster_folds_hold_out_clusters_within_every_route():
    f, y = blobs(n=400)
    folds = shift.cluster_folds(y, f["mean"], k=5, seed=0)
    assert len(folds) == 5
    test = np.concatenate([te for _, te in folds])
    assert sorted(test) == list(range(len(y)))  # every row held out once
    for _, te in folds:
        assert set(y[te]) == {0, 1, 2}  # each fold holds rows of every route
    # a held-out row's nearest same-route neighbour is more often in its own fold than by chance
    x = f["mean"]
    same = 0
    fold_of = np.empty(len(y), dtype=int)
    for i, (_, te) in enumerate(folds):
        fold_of[te] = i
    for i in range(len(y)):
        d = np.linalg.norm(x - x[i], axis=1)
        d[i] = np.inf
        d[y != y[i]] = np.inf
        same += fold_of[int(np.argmin(d))] == fold_of[i]
    assert same / len(y) > 0.5  # random folds: about 0.2


@pytest.mark.parametrize("new,current,warns", [
    ({"accuracy": 0.70, "ece": 0.05}, {"accuracy": 0.78, "ece": 0.05}, True),
    ({"accuracy": 0.80, "ece": 0.09}, {"accuracy": 0.78, "ece": 0.05}, True),
    ({"accuracy": 0.80, "ece": 0.04}, {"accuracy": 0.78, "ece": 0.05}, False),
])
def test_tune_warns_when_the_new_head_is_not_better_than_the_current_one(new, current, warns):
    w = compare_with_current(new, current, "CV grouped by source")
    assert bool(w) == warns
    assert compare_with_current(new, None, "x") == []


def test_the_cascade_choice_says_which_rows_it_leaves_to_the_model():
    from llmrouter.quality import cascade

    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 300)
    cheap = rng.normal(0, 1, (300, 3))
    cheap[np.arange(300), y] += rng.uniform(0, 6, 300)  # sure and right on some rows
    model = np.full((300, 3), 0.1)
    model[np.arange(300), y] = 0.8
    choice = cascade.choose(y, cheap, model)
    assert choice.passed is not None and len(choice.passed) == 300
    assert abs((~choice.passed).mean() - choice.share) < 1e-12
    assert "passed" not in choice.summary()


@pytest.mark.parametrize("name", ["default_routes.head.npz", "difficulty.head.npz"])
def test_the_shipped_heads_were_calibrated_on_grouped_folds_and_say_how_they_did_there(name):
    from llmrouter.paths import PACKAGE_DIR

    head = FittedHead.load(PACKAGE_DIR / name)
    assert head.info["grouping"] == "cluster"  # package examples name no sources
    cv = head.info["grouped_cv"]
    assert 0 <= cv["ece"] <= 0.05 and cv["n"] > 100


def test_a_copy_of_the_difficulty_table_elsewhere_finds_its_shipped_head(tmp_path):
    from pathlib import Path

    from llmrouter.config import Config

    examples = Path(__file__).resolve().parents[2] / "examples"
    copy = tmp_path / "mine.toml"
    copy.write_text((examples / "difficulty.toml").read_text())
    cfg = Config.load(copy)
    assert cfg.router.mode == "fitted"
    head = FittedHead.load(cfg.router.head_path(cfg.path))
    assert head.routes == cfg.table.names and head.cheap is not None


def test_the_far_probes_are_the_same_for_a_seed_and_cover_every_kind():
    from llmrouter.quality import probes

    a, b = probes.far_probes(per_kind=3), probes.far_probes(per_kind=3)
    assert a == b and a != probes.far_probes(per_kind=3, seed=1)
    assert [k for k, _ in a] == [k for k in probes.KINDS for _ in range(3)]
    assert len({t for _, t in a}) == len(a) and all(len(t) >= 40 for _, t in a)
