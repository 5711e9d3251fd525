"""The cascade's cheap stage: zero-shot from a table's words, fitted and stored inside a head, and
the threshold that keeps the cascade within a point of the model (no model)."""

from __future__ import annotations

import math

import numpy as np
from test_members import ROUTES, SHA, KEY, data

from llmrouter.head import CheapStage, FittedHead
from llmrouter.head.calibration import softmax
from llmrouter.quality import cascade


def test_examples_stage_picks_the_route_whose_words_match_and_never_decides_first():
    stage = CheapStage.from_examples(("code", "math", "chat"), [
        ["Programming: write or debug code", "Write a Python function", "fix this SQL query"],
        ["Arithmetic and algebra", "solve the equation", "compute the integral"],
        ["Small talk and greetings", "hello there", "how are you today"],
    ])
    for text, route in (("write a python function that sorts", "code"), ("solve this equation for x", "math"),
                        ("hello, how are you?", "chat")):
        scores, decides = stage.decide(text)
        assert max(scores, key=scores.__getitem__) == route
        assert math.isclose(sum(scores.values()), 1.0) and not decides
    assert stage.name == "cheap:examples" and math.isinf(stage.threshold)


def test_a_fitted_stage_is_stored_inside_the_head_and_reloads(tmp_path):
    feats, y = data()
    choice = cascade.CascadeChoice(0.7, 1.3, 0.5, 0.95, 0.9, 0.92, 0.91, 0.8)
    stage = cascade.fit_stage(feats["text"], y, ROUTES, choice)
    head = FittedHead.calibration(feats["logp"], y, ROUTES, model_sha256=SHA, feature_key=KEY)
    from dataclasses import replace

    back = FittedHead.load(replace(head, cheap=stage).save(tmp_path / "h.head.npz"))
    assert back.cheap is not None and back.cheap.threshold == 0.7 and back.cheap.temperature == 1.3
    text = "write a python script"
    got, want = back.cheap.scores(text), stage.scores(text)  # stored as float32
    assert got.keys() == want.keys() and all(math.isclose(got[r], want[r], abs_tol=1e-6) for r in got)
    assert back.cheap.info["share"] == 0.5
    assert FittedHead.load(head.save(tmp_path / "plain.head.npz")).cheap is None


def test_the_threshold_is_the_lowest_that_keeps_the_cascade_within_a_point():
    rng = np.random.default_rng(0)
    n, k = 400, 3
    y = rng.integers(0, k, n)
    model_p = softmax(np.eye(k)[y] * 3 + rng.normal(0, 1, (n, k)))  # a good model
    sure = rng.random(n) < 0.5  # the cheap stage: confident and right on half, a coin flip elsewhere
    cheap_logits = np.where(sure[:, None], np.eye(k)[y] * 8, rng.normal(0, 0.3, (n, k)))
    choice = cascade.choose(y, cheap_logits, model_p)
    assert choice.accuracy >= choice.model_alone - cascade.MAX_LOSS
    assert 0.3 < choice.share <= 0.6 and choice.cheap_accuracy > 0.95
    lower = [g for g in choice.grid if g["threshold"] < choice.threshold]
    assert all(g["accuracy"] < choice.model_alone - cascade.MAX_LOSS for g in lower)


def test_a_useless_cheap_stage_never_decides_first():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    model_p = softmax(np.eye(3)[y] * 5)
    wrong = np.eye(3)[(y + 1) % 3] * 6  # confidently wrong
    choice = cascade.choose(y, wrong, model_p)
    assert math.isinf(choice.threshold) and choice.share == 0.0 and choice.summary()["threshold"] is None


def sure_and_unsure(n=1200, seed=0):
    """A cheap stage that is right 96% of the time where it is sure (a margin of 2.5) and guesses
    elsewhere: one temperature fitted on every row is set by the guesses."""
    rng = np.random.default_rng(seed)
    k = 3
    y = rng.integers(0, k, n)
    sure = rng.random(n) < 0.35
    said = np.where(sure & (rng.random(n) < 0.96), y, rng.integers(0, k, n))
    logits = rng.normal(0, 0.8, (n, k))
    logits[np.arange(n), said] += np.where(sure, 2.5, 0.8)
    model_p = softmax(np.eye(k)[y] * 2.0 + rng.normal(0, 1, (n, k)))
    return y, logits, model_p


def test_where_the_stage_decides_its_confidence_is_its_accuracy_there():
    y, logits, model_p = sure_and_unsure()
    choice = cascade.choose(y, logits, model_p, max_loss=0.05)
    assert choice.share > 0.1 and choice.decided_temperature is not None
    decided = ~choice.passed
    right = (logits[decided].argmax(1) == y[decided]).mean()
    before = softmax(logits[decided] / choice.temperature).max(1).mean()
    after = softmax(logits[decided] / choice.decided_temperature).max(1).mean()
    assert before < right - 0.05  # one temperature for every row: underconfident where it decides
    assert abs(after - right) < 0.03
    p = cascade.cascade_proba(logits, model_p, choice)
    assert np.allclose(p[~decided], model_p[~decided]) and np.allclose(p[decided].max(1), softmax(
        logits[decided] / choice.decided_temperature).max(1))


def test_the_decided_temperature_changes_what_the_stage_says_not_what_it_decides(tmp_path):
    feats, y = data()
    choice = cascade.CascadeChoice(0.5, 2.0, 0.5, 0.95, 0.9, 0.92, 0.91, 0.8, decided_temperature=0.5)
    stage = cascade.fit_stage(feats["text"], y, ROUTES, choice)
    texts = ["write a python script", "solve 3x = 9", "good evening", "zzzz qqqq"]
    from dataclasses import replace

    plain = replace(stage, decided_temperature=None)
    p, decides = stage.read(texts)
    p0, decides0 = plain.read(texts)
    assert (decides == decides0).all() and decides.any() and (p.argmax(1) == p0.argmax(1)).all()
    assert (p[decides].max(1) > p0[decides].max(1)).all() and np.allclose(p[~decides], p0[~decides])
    head = FittedHead.calibration(feats["logp"], y, ROUTES, model_sha256=SHA, feature_key=KEY)
    back = FittedHead.load(replace(head, cheap=stage).save(tmp_path / "h.head.npz")).cheap
    assert back is not None and back.decided_temperature == 0.5
    assert np.allclose(back.read(texts)[0], p, atol=1e-5)


def test_the_cascade_is_cross_fitted_on_every_fold_row():
    y, logits, model_p = sure_and_unsure(n=600, seed=2)
    folds = [(np.setdiff1d(np.arange(600), te), te) for te in np.array_split(np.arange(600), 4)]
    model_p[:10] = np.nan  # rows the model stage has no out-of-fold probabilities for
    p = cascade.cross_fitted(y, logits, model_p, folds)
    assert np.isnan(p[:10]).all() and not np.isnan(p[10:]).any() and np.allclose(p[10:].sum(1), 1)


def test_the_shipped_cascade_has_a_temperature_where_it_decides_and_its_grouped_figures():
    from llmrouter.paths import PACKAGE_DIR

    cheap = FittedHead.load(PACKAGE_DIR / "default_routes.head.npz").cheap
    assert cheap is not None and math.isfinite(cheap.threshold)
    assert cheap.decided_temperature is not None and cheap.decided_temperature < cheap.temperature
    cv = cheap.info["grouped_cv"]  # the whole cascade, cross-fitted on the cluster folds
    assert 0 <= cv["ece"] <= 0.05 and cv["n"] > 100
