"""Batched decisions on the real model: requests that waited together are decided in one llama.cpp
pass over the shared prefix, with the same routes as one at a time, and leave nothing behind."""

from __future__ import annotations

import pytest

from llmrouter.quality import observed as obs
from llmrouter.quality import specs as tuning_specs
from llmrouter.quality import tune as tn
from llmrouter.router import Router

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def batching(default_config):
    """The default table on a decider built for batches of 8 (on a CPU the default is 1)."""
    router = Router(default_config.with_router(cache=False, max_batch=8))
    yield router
    router.close()
TEXTS = [
    "hi!",
    "Write a Python function that merges two sorted lists.",
    "Translate 'where is the station?' into German.",
    "Solve for x: 3x + 7 = 22.",
    "Summarize the following paragraph: The city council met on Tuesday to discuss the new budget, "
    "which includes funding for parks, road repairs and a new library branch in the north district.",
    "Give me ten name ideas for a coffee shop run by cats.",
    "Is this review positive or negative? 'The battery died after two days.'",
    "Extract every email address from: contact bob@example.com or alice@test.org for details.",
]


def test_a_batch_decides_as_one_request_at_a_time_does(batching):
    d = batching.decider
    assert d.multi is not None and d.n_seq_max > len(TEXTS)
    alone = [d.decide(t) for t in TEXTS]
    together = d.decide_batch(TEXTS)
    assert [v.route for v in together] == [v.route for v in alone]
    assert len({v.timings.prefill_ms for v in together}) == 1  # one pass for all, not eight
    for a, b in zip(alone, together):
        assert b.decider == a.decider == "fitted:exit@24" and b.request_tokens == a.request_tokens
        assert b.scores == pytest.approx(a.scores, abs=0.02)  # float noise: cells sit elsewhere
    assert d.decide(TEXTS[1]).scores == pytest.approx(alone[1].scores, abs=1e-6)  # nothing left behind


def test_a_batch_of_one_and_an_oversized_mix_take_the_right_paths(batching):
    d = batching.decider
    one = d.decide_batch(TEXTS[:1])
    assert one[0].scores == pytest.approx(d.decide(TEXTS[0]).scores, abs=1e-6)
    long = "Summarize this: " + "the committee reviewed the plan again and again. " * 60  # near the token cap
    mixed = d.decide_batch([long, TEXTS[1], long, TEXTS[3]])  # cannot all share one 512-token pass
    assert [v.route for v in mixed] == [d.decide(t).route for t in (long, TEXTS[1], long, TEXTS[3])]
    assert mixed[0].truncated and mixed[0].request_tokens == d.settings.max_request_tokens


def test_an_early_exit_head_batches_too(batching, tmp_path_factory):
    d = batching.decider
    feats, _ = obs.observe(d, TEXTS, cache_dir=tmp_path_factory.mktemp("features"))
    y = __import__("numpy").arange(len(TEXTS)) % len(d.table.names)
    head = tn.fit(tuning_specs.Spec("fitted", ("mean@16", "last@16"), 0.1), obs.Observed(feats, y), d.table.names,
                  model_sha256=d.model_id, feature_key=d.feature_key)
    old = d.head
    try:
        d.use_head(head)
        alone = [d.decide(t) for t in TEXTS]
        together = d.decide_batch(TEXTS)
    finally:
        d.head = old
    assert all(v.decider == "fitted:exit@16" for v in alone + together)
    assert [v.route for v in together] == [v.route for v in alone]
    assert len({v.timings.prefill_ms for v in together}) == 1  # one stopped pass for all
