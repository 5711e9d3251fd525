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
        scores = stage.scores(text)
        assert max(scores, key=scores.__getitem__) == route
        assert math.isclose(sum(scores.values()), 1.0) and not stage.confident(scores)
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
