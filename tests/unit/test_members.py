"""Head members: the character n-gram model matches sklearn's TF-IDF, ensembles store and reload,
and heads written in the first format still load (no model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmrouter.head.calibration import softmax
from llmrouter.head.fitted import FittedHead
from llmrouter.head.members import TEXT, Chars, layers_of
from llmrouter.quality.specs import Spec, candidate_specs, exits_early

ROUTES = ("code", "math", "chat")
SHA, KEY = "ab" * 32, "k" * 16
TEXTS = {
    "code": ["def f(x): return x", "fix this python bug: import os", "write a SQL query joining two tables",
             "class Foo { public void run() {} }", "python script to rename files", "regex for emails in js"],
    "math": ["solve 2x + 3 = 7", "what is the integral of x^2", "compute 17 * 23", "prove that sqrt(2) is irrational",
             "find the derivative of sin x", "what is 15% of 80"],
    "chat": ["hi how are you", "good morning!", "thanks, that was nice", "what's up buddy",
             "hello there friend", "how was your day"],
}


def data(seed=0, d=6):
    rng = np.random.default_rng(seed)
    texts, y = [], []
    for k, route in enumerate(ROUTES):
        texts += TEXTS[route]
        y += [k] * len(TEXTS[route])
    y = np.array(y)
    centers = np.random.default_rng(9).normal(0, 2, (3, d))
    feats = {"mean": centers[y] + rng.normal(0, 1, (len(y), d)), "last": rng.normal(0, 1, (len(y), d)),
             "mean@7": centers[y] + rng.normal(0, 1, (len(y), d)), "last@7": rng.normal(0, 1, (len(y), d)),
             "mean@3": centers[y] + rng.normal(0, 2, (len(y), d)), "last@3": rng.normal(0, 1, (len(y), d)),
             "logp": np.log(softmax(rng.normal(0, 1, (len(y), 3)))), TEXT: np.array(texts)}
    return feats, y


def test_chars_member_matches_sklearn_tfidf():
    from sklearn.feature_extraction.text import TfidfVectorizer

    feats, y = data()
    m = Chars.fit(feats, y, 3, C=10.0)
    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2, sublinear_tf=True,
                          max_features=Chars.MAX_FEATURES).fit(list(feats[TEXT]))
    new = ["write python code", "what is 3 + 4", "Ünïcödé and 中文 text", "", "a  bc\tDEF\n\nxy Zw! I"]
    ref = vec.transform(new).toarray()
    ours = m._vectorize(new)
    order = [vec.vocabulary_[g] for g in m.vocab]
    assert np.allclose(ours, ref[:, order], atol=1e-9)
    assert m.logits({TEXT: np.array(new)}).shape == (5, 3)


def test_chars_member_learns_surface_cues():
    feats, y = data()
    m = Chars.fit(feats, y, 3, C=10.0)
    p = softmax(m.logits({TEXT: np.array(["write a python function", "solve 3x = 12", "hello, how are you"])}))
    assert list(p.argmax(1)) == [0, 1, 2]


def test_ensemble_head_round_trips_and_names_what_it_reads(tmp_path):
    feats, y = data()
    h = FittedHead.calibration(feats["logp"], y, ROUTES, model_sha256=SHA, feature_key=KEY)
    h = h.with_head(feats, y, blocks=("mean", "last", "logp"), C=0.5, extra_blocks=[("mean@7", "last@7", "logp")],
                    chars_C=10.0)
    assert [m.kind for m in h.members] == ["dense", "dense", "chars"]
    assert all(m.weight == 0.5 for m in h.members)
    assert h.layers == (7,) and TEXT in h.blocks
    g = FittedHead.load(h.save(tmp_path / "e.head.npz"))
    assert [m.kind for m in g.members] == ["dense", "dense", "chars"] and g.layers == (7,)
    assert np.allclose(g.head_proba(feats), h.head_proba(feats), atol=1e-4)
    # the sum of member log-probabilities, before the temperature
    manual = sum(0.5 * np.log(softmax(m.logits(feats))) for m in h.members)
    assert np.allclose(softmax(manual), h.head_proba(feats), atol=1e-9)
    with pytest.raises(ValueError, match="text"):
        h.head_proba({k: v for k, v in feats.items() if k != TEXT})


def test_a_first_format_head_still_loads(tmp_path):
    feats, y = data()
    h = FittedHead.calibration(feats["logp"], y, ROUTES, model_sha256=SHA, feature_key=KEY)
    h = h.with_head(feats, y, blocks=("last", "logp"), C=0.5)
    m = h.members[0]
    meta = {"format": 1, "routes": list(ROUTES), "model_sha256": SHA, "feature_key": KEY,
            "model_temperature": 1.0, "blocks": ["last", "logp"], "temperature": 1.0, "threshold": 0.0,
            "info": {"C": 0.5}}
    path = tmp_path / "old.npz"
    np.savez(path, model_bias=h.model_bias, center=m.center, scale=m.scale, coef=m.coef, intercept=m.intercept,
             meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    g = FittedHead.load(path)
    assert g.blocks == ("last", "logp")
    assert np.allclose(g.head_proba(feats), h.head_proba(feats), atol=1e-6)


def test_tune_tries_ensembles_only_where_layers_and_texts_were_observed():
    feats, _ = data()
    labels = [s.label for s in candidate_specs(feats)]
    assert any("mean+last+logp | mean@7+last@7+logp | chars" in x for x in labels)  # the deepest layer
    assert any("mean+last+logp | mean@3+last@3+logp | mean@7+last@7+logp | chars" in x for x in labels)  # all
    at3, at7 = ("mean@3", "last@3", "logp"), ("mean@7", "last@7", "logp")
    full = [s for s in candidate_specs(feats) if not exits_early(s)]
    assert {s.extra for s in full if s.extra} == {(at7,), (at3, at7)}  # never layer 3 alone
    early = [s for s in candidate_specs(feats) if exits_early(s)]  # layers only: the pass may stop there
    assert {(s.blocks, s.extra) for s in early} == {(("mean@3", "last@3"), ()), (("mean@7", "last@7"), ()),
                                                   (("mean@3", "last@3"), (("mean@7", "last@7"),))}
    assert all(s.chars_C for s in early)
    deepest = candidate_specs({k: v for k, v in feats.items() if "@3" not in k})
    assert not any(len(s.extra) > 1 for s in deepest) and any(s.extra for s in deepest)
    plain = candidate_specs({k: v for k, v in feats.items() if "@" not in k and k != TEXT})
    assert all(not s.extra and not s.chars_C for s in plain)
    assert layers_of(("mean@3", "last@12", "logp")) == (3, 12)
    assert Spec("fitted", ("mean",), 0.1, extra=(("mean@7",),), chars_C=10).as_("combined", 0.5).threshold == 0.5


def test_only_a_head_that_reads_intermediate_layers_alone_can_exit_early():
    feats, y = data()
    base = FittedHead.calibration(feats["logp"], y, ROUTES, model_sha256=SHA, feature_key=KEY)
    early = base.with_head(feats, y, blocks=("mean@3", "last@3"), C=0.1, extra_blocks=[("mean@7", "last@7")],
                           chars_C=10.0)
    assert early.exit_layer == 7
    assert base.with_head(feats, y, blocks=("mean@7", "logp"), C=0.1).exit_layer is None  # model scores
    assert base.with_head(feats, y, blocks=("last",), C=0.1, extra_blocks=[("mean@3",)]).exit_layer is None
    assert base.exit_layer is None  # calibration only
