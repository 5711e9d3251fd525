"""Fitted and combined modes on the real default model: features from the decision's own forward
pass, a head fitted on a few dozen of the package's examples, and the refusal of foreign heads."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmrouter.quality import evaluate as ev
from llmrouter.quality import observed as obs
from llmrouter.quality import specs as tuning_specs
from llmrouter.quality import tune as tn
from llmrouter.head import FittedHead
from llmrouter.errors import ConfigError
from llmrouter.router import Router

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def few(default_config):
    """Three package examples per route (33 requests), and their observations."""
    recs = ev.load_records(obs.PACKAGE_EXAMPLES)
    by: dict[str, list[ev.Record]] = {}
    for r in recs:
        by.setdefault(r.label, []).append(r)
    return [r for name in default_config.table.names for r in by[name][:3]]


@pytest.fixture(scope="module")
def observed(model_router, few, tmp_path_factory):
    d = model_router.decider
    feats, ms = obs.observe(d, [r.text for r in few], cache_dir=tmp_path_factory.mktemp("features"))
    y = np.array([d.table.names.index(r.label) for r in few])
    return obs.Observed(feats, y, ms)


def test_observation_matches_the_scored_decision(model_router):
    d = model_router.decider
    text = "Translate 'good night' into Italian."
    obs, verdict = d.observe(text)
    old = d.mode, d.head
    try:
        d.mode, d.head = "scored", None  # the model alone, without the table's head
        plain = d.decide(text)
    finally:
        d.mode, d.head = old
    assert obs.mean.shape == obs.last.shape == (d.n_embd,)
    assert np.isfinite(obs.mean).all() and np.isfinite(obs.last).all()
    assert obs.scores == pytest.approx(plain.scores, abs=1e-4)
    assert plain.decider == "llama-scored"
    assert d.mode == "fitted" and d.head is not None  # the default table decides with its fitted head
    assert verdict.decider == "fitted"
    assert verdict.scores == pytest.approx(d.decide(text).scores, abs=1e-6)


def test_hidden_states_differ_between_requests(model_router):
    a, _ = model_router.decider.observe("hi there!")
    b, _ = model_router.decider.observe("Solve 3x + 4 = 19 for x.")
    assert not np.allclose(a.last, b.last)


def test_layer_tap_reads_an_intermediate_layer(model_router):
    d = model_router.decider
    assert len(d.observe_layers) == 2 and all(0 < x < d.n_layer - 1 for x in d.observe_layers)
    a, _ = d.observe("hi there!")
    b, _ = d.observe("Solve 3x + 4 = 19 for x.")
    a2, _ = d.observe("hi there!")
    assert set(a.layers) == set(d.observe_layers)
    for layer in d.observe_layers:
        mean, last = a.layers[layer]
        assert mean.shape == last.shape == (d.n_embd,) and np.isfinite(mean).all()
        assert np.allclose(a2.layers[layer][0], mean) and np.allclose(a2.layers[layer][1], last)
        assert not np.allclose(b.layers[layer][1], last)
        # an intermediate layer is not the final one (which llama.cpp also normalises)
        assert not np.allclose(mean, a.mean, atol=1e-2)
    lo, hi = d.observe_layers  # nor are two layers the same
    assert not np.allclose(a.layers[lo][0], a.layers[hi][0], atol=1e-2)
    assert a.text == "hi there!"


def test_tap_is_idle_after_a_decision(model_router):
    d = model_router.decider
    d.observe("What is the capital of Peru?")
    assert not d.tap.armed and d.tap.states == {}


SPECS = {
    "fitted": tuning_specs.Spec("fitted", ("last", "logp"), 0.1),
    "combined": tuning_specs.Spec("combined", ("last", "logp"), 0.1, threshold=0.5),
    "ensemble": tuning_specs.Spec("fitted", ("mean", "last", "logp"), 0.1, extra=(("mean@16", "last@16", "logp"),
                                                                          ("mean@24", "last@24", "logp")),
                        chars_C=10.0),
}


@pytest.mark.parametrize("which", list(SPECS))
def test_head_modes_give_valid_decisions(model_router, observed, few, which, tmp_path):
    d = model_router.decider
    spec = SPECS[which]
    mode = spec.mode
    head = tn.fit(spec, observed, d.table.names, model_sha256=d.model_id, feature_key=d.feature_key)
    path = head.save(tmp_path / "h.npz")
    cfg = model_router.config.with_router(mode=mode, head=str(path))
    old_mode, old_head = d.mode, d.head
    try:
        d.mode = mode
        d.use_head(FittedHead.load(cfg.router.head_path(cfg.path)))
        router = Router(cfg, decider=d, cache=None)
        hits = 0
        for r in few[::3]:  # one training request per route: the head should recall most of them
            dec = router.decide(r.text, use_cache=False)
            assert dec.source == "model"
            assert math.isclose(sum(dec.scores.values()), 1.0, abs_tol=1e-6)
            assert set(dec.scores) == set(d.table.names)
            assert dec.confidence == pytest.approx(dec.scores[dec.route])
            assert dec.decider in (("fitted",) if mode == "fitted" else ("combined:head", "combined:model"))
            hits += dec.route == r.label
        assert hits >= 8  # of 11 it was fitted on
    finally:
        d.mode, d.head = old_mode, old_head


def test_a_head_for_another_table_is_refused(model_router, observed, tmp_path, default_config):
    d = model_router.decider
    head = tn.fit(tuning_specs.Spec("fitted", ("last",), 0.1), observed, d.table.names,
                  model_sha256=d.model_id, feature_key=d.feature_key)
    path = head.save(tmp_path / "h.npz")
    with pytest.raises(ConfigError, match="another router prompt"):
        FittedHead.load(path).check(d.model_id, "0" * 16, d.table.names)
    routes = [r.model_dump() for r in default_config.table.routes]
    routes[0]["description"] = "Anything about software."
    data = default_config.to_dict()
    data["router"].update(mode="fitted", head=str(path))
    other = default_config.from_dict({**data, "routes": routes})
    with pytest.raises(ConfigError, match="another router prompt"):
        Router(other.with_router(cache=False))


def test_fitted_mode_without_a_head_is_a_config_error(default_config):
    with pytest.raises(ConfigError, match="needs a fitted head"):
        Router(default_config.with_router(mode="fitted", head="", cache=False))


def test_a_head_reading_a_layer_the_model_lacks_is_refused(model_router, observed):
    d = model_router.decider
    feats = dict(observed.feats)
    feats["mean@99"] = feats["mean@24"]
    head = tn.fit(tuning_specs.Spec("fitted", ("mean@99",), 0.1), obs.Observed(feats, observed.y), d.table.names,
                  model_sha256=d.model_id, feature_key=d.feature_key)
    assert head.layers == (99,)
    with pytest.raises(ConfigError, match="layer"):
        d.use_head(head)


def test_an_early_exit_head_stops_the_pass_at_its_layer_and_decides_the_same(model_router, observed, few):
    d = model_router.decider
    spec = tuning_specs.Spec("fitted", ("mean@16", "last@16"), 0.1, chars_C=10.0)
    assert tuning_specs.exits_early(spec)
    head = tn.fit(spec, observed, d.table.names, model_sha256=d.model_id, feature_key=d.feature_key)
    assert head.exit_layer == 16
    old_head = d.head
    try:
        d.use_head(head)
        for r in few[::4]:
            early = d.decide(r.text)
            obs, _ = d.observe(r.text)  # a whole pass: the same layer's states, the same decision
            full, _ = head.decide(obs, "fitted")
            assert early.decider == "fitted:exit@16" and early.route == max(full, key=full.__getitem__)
            assert early.scores == pytest.approx(full, abs=1e-5)
        d.head = old_head
        again = d.decide(few[0].text)  # the stopped pass left nothing behind
        d.use_head(head)
    finally:
        d.head = old_head
    assert again.scores == pytest.approx(d.decide(few[0].text).scores, abs=1e-6)


@pytest.mark.parametrize("kind", ["base64", "hex", "log", "numbers"])
def test_the_shipped_head_is_less_sure_of_a_far_probe_than_of_an_ordinary_prompt(model_router, kind):
    """The hinge beyond the fit rows' support (head/support.py) on the real model and the shipped
    head: a probe of a kind the head alone was sure of (bench/results/calibration.md) is decided
    below the escalation threshold of examples/escalation.toml, an ordinary prompt above it."""
    from llmrouter.quality import probes

    text = next(t for k, t in probes.far_probes(per_kind=1) if k == kind)
    far = model_router.decide(text)
    near = model_router.decide("Write a Python function that returns the n-th Fibonacci number.")
    assert far.confidence is not None and near.confidence is not None
    assert far.confidence < 0.6 < near.confidence
    assert far.confidence < near.confidence - 0.2
