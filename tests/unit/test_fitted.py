"""The fitted head: fitting, calibration, modes, storage and the refusal of foreign heads (no model)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrouter.head.calibration import fit_bias_temperature, fit_temperature, softmax
from llmrouter.head.fitted import FittedHead, Observation, stack
from llmrouter.errors import ConfigError

ROUTES = ("code", "math", "chat")
SHA, KEY = "ab" * 32, "k" * 16


def synthetic(n=240, d=8, seed=0):
    """States that separate the routes; model scores biased towards 'chat'."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.random.default_rng(99).normal(0, 3, (3, d))  # the same routes in every sample
    mean = centers[y] + rng.normal(0, 1, (n, d))
    last = centers[y] * 0.5 + rng.normal(0, 1, (n, d))
    logit = rng.normal(0, 1, (n, 3))
    logit[np.arange(n), y] += 1.0
    logit[:, 2] += 2.0  # the model likes 'chat'
    logp = np.log(softmax(logit))
    return {"mean": mean, "last": last, "logp": logp}, y


def head(feats, y, blocks=("mean", "last", "logp"), C=1.0):
    h = FittedHead.calibration(feats["logp"], y, ROUTES, model_sha256=SHA, feature_key=KEY)
    return h.with_head(feats, y, blocks=blocks, C=C)


def test_head_beats_the_biased_model_and_calibration_removes_the_bias():
    f, y = synthetic()
    ft, yt = synthetic(seed=1)
    h = head(f, y)
    raw = (softmax(ft["logp"]).argmax(1) == yt).mean()
    cal = (h.model_proba(ft["logp"]).argmax(1) == yt).mean()
    fit = (h.head_proba(ft).argmax(1) == yt).mean()
    assert cal > raw + 0.05
    assert fit > 0.9
    assert h.model_bias[2] < h.model_bias[0]  # the bias towards 'chat' is corrected


@given(st.integers(0, 1000))
@settings(max_examples=15, deadline=None)
def test_every_mode_gives_a_distribution(seed):
    f, y = synthetic(60, seed=seed)
    h = replace(head(f, y, C=0.1), threshold=0.6)
    for mode in ("scored", "fitted", "combined"):
        p, by_head = h.proba(f, mode)
        assert p.shape == (60, 3)
        assert np.allclose(p.sum(1), 1.0) and (p >= 0).all()
        if mode == "combined":
            assert (by_head == (h.head_proba(f).max(1) >= 0.6)).all()


def test_decide_says_which_part_decided():
    f, y = synthetic()
    h = replace(head(f, y), threshold=0.99)
    i = int(np.argmin(h.head_proba(f).max(1)))  # the head's least sure row
    obs = Observation(scores=dict(zip(ROUTES, np.exp(f["logp"][i]))), mean=f["mean"][i], last=f["last"][i])
    scores, who = h.decide(obs, "combined")
    assert who == "combined:model"
    assert set(scores) == set(ROUTES) and abs(sum(scores.values()) - 1) < 1e-9
    assert h.decide(obs, "fitted")[1] == "fitted"
    assert replace(h, threshold=0.0).decide(obs, "combined")[1] == "combined:head"
    assert h.decide(obs, "scored")[1] == "llama-scored+calibrated"


def test_save_load_round_trip_without_pickle(tmp_path):
    f, y = synthetic()
    h = replace(head(f, y, blocks=("last", "logp")), temperature=1.7, threshold=0.4, info={"C": 1.0})
    p = h.save(tmp_path / "t.head.npz")
    with np.load(p, allow_pickle=False) as z:  # no object arrays inside
        assert "meta" in z.files
    g = FittedHead.load(p)
    assert g.blocks == ("last", "logp") and g.temperature == pytest.approx(1.7) and g.threshold == pytest.approx(0.4)
    assert g.digest and g.info == {"C": 1.0}
    assert np.allclose(g.head_proba(f), h.head_proba(f), atol=1e-4)
    assert np.allclose(g.model_proba(f["logp"]), h.model_proba(f["logp"]), atol=1e-4)


def test_calibration_only_head_round_trips(tmp_path):
    f, y = synthetic()
    h = FittedHead.calibration(f["logp"], y, ROUTES, model_sha256=SHA, feature_key=KEY)
    g = FittedHead.load(h.save(tmp_path / "c.npz"))
    assert not g.has_head and not g.needs_states("combined")
    assert np.allclose(g.proba(f, "combined")[0], h.model_proba(f["logp"]), atol=1e-4)


def test_a_head_for_another_model_prompt_or_table_is_refused():
    f, y = synthetic()
    h = head(f, y)
    h.check(SHA, KEY, ROUTES)
    with pytest.raises(ConfigError, match="model sha256"):
        h.check("cd" * 32, KEY, ROUTES)
    with pytest.raises(ConfigError, match="routes"):
        h.check(SHA, KEY, ("code", "math"))
    with pytest.raises(ConfigError, match="prompt"):
        h.check(SHA, "other", ROUTES)


def test_load_refuses_garbage(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a fitted head"):
        FittedHead.load(bad)
    with pytest.raises(ConfigError, match="no fitted head"):
        FittedHead.load(tmp_path / "missing.npz")


def test_a_route_without_training_rows_is_almost_never_chosen():
    f, y = synthetic()
    keep = y != 1
    h = head({k: v[keep] for k, v in f.items()}, y[keep])
    assert (h.head_proba(f)[:, 1] < 1e-3).all()


def test_temperature_fitting_softens_overconfident_logits():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 500)
    logits = rng.normal(0, 1, (500, 3))
    logits[np.arange(500), y] += 1.0
    assert fit_temperature(logits * 10, y) > 3.0
    b, t = fit_bias_temperature(np.log(softmax(logits * 10)), y, 3)
    assert t > 3.0 and np.abs(b).max() < 5


def test_stack_builds_blocks_from_observations():
    o = Observation(scores={"code": 0.5, "math": 0.5, "chat": 0.0}, mean=np.ones(4), last=np.zeros(4))
    s = stack([o, o], ROUTES)
    assert s["mean"].shape == (2, 4) and s["logp"].shape == (2, 3)
    assert np.isfinite(s["logp"]).all()
