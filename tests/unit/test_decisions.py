"""Validation: whatever a decider returns becomes a route of the table or the default route."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrouter.cache import DecisionCache
from llmrouter.config import Config
from llmrouter.llamacpp.trie import build_trie, passes_needed, score_routes
from llmrouter.errors import DeciderError, RequestError
from llmrouter.router import Router
from llmrouter.types import Request, Verdict
from llmrouter.validate import clean_scores, extract_route

CFG = Config.from_dict({
    "router": {"default_route": "chat", "cache": False},
    "routes": [{"name": n, "description": n} for n in ("code", "math", "chat")],
})


class FakeDecider:
    """Returns whatever it is given (unit level only)."""

    name = "fake"
    model_id = "fake-model"

    def __init__(self, output=None, exc=None):
        self.output, self.exc, self.calls = output, exc, 0

    def decide(self, text, *, explain=False):
        self.calls += 1
        if self.exc:
            raise self.exc
        return self.output


def router_with(output=None, exc=None, cache=None):
    return Router(CFG, decider=FakeDecider(output, exc), cache=cache)


junk = st.one_of(
    st.none(), st.integers(), st.floats(), st.text(), st.binary(),
    st.dictionaries(st.text(max_size=8), st.one_of(st.text(), st.integers(), st.none()), max_size=4),
    st.builds(lambda r: json.dumps({"route": r}), st.text()),
    st.builds(lambda r: Verdict(route=r), st.text()),
    st.sampled_from(["code", "math", "chat", '{"route": "math"}', '{"route": "math"', "CODE", " code "]),
)


@settings(max_examples=300, deadline=None)
@given(junk)
def test_any_decider_output_maps_to_a_route_of_the_table(output):
    d = router_with(output=output).decide("hello")
    assert d.route in CFG.table.names
    route, why = extract_route(output, CFG.table)
    if route is None:
        assert d.source == "default" and d.route == "chat" and d.reason
    else:
        assert d.route == route and d.source == "model"


def test_decider_failure_becomes_default_with_reason():
    d = router_with(exc=DeciderError("llama.cpp exploded")).decide("hello")
    assert (d.route, d.source) == ("chat", "default")
    assert "llama.cpp exploded" in d.reason


def test_unknown_route_and_malformed_json_are_explained():
    assert "unknown route 'frontier'" in router_with(Verdict(route="frontier")).decide("x").reason
    assert "malformed JSON" in router_with('{"route": "code"').decide("x").reason


def test_scores_are_cleaned():
    assert clean_scores({"code": 0.7, "math": float("nan"), "chat": 2, "zzz": 0.1}, CFG.table) == {
        "code": 0.7, "chat": 1.0}
    assert clean_scores("nope", CFG.table) == {}


def test_confidence_is_the_chosen_routes_score():
    d = router_with(Verdict(route="math", scores={"code": 0.2, "math": 0.7, "chat": 0.1})).decide("2+2")
    assert d.confidence == 0.7 and d.scores["code"] == 0.2


@pytest.mark.parametrize("bad", ["", "   ", [], [{"role": "system", "content": "hi"}], 42,
                                 b"\xff\xfe", "a\udc80b", [{"role": "nobody", "content": "x"}]])
def test_bad_requests_raise_request_error(bad):
    with pytest.raises(RequestError):
        router_with(Verdict(route="code")).decide(bad)


def test_requests_from_messages_and_parts():
    r = Request.of([
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "data:,"}}]},
    ], surface="web")
    assert r.text == "look" and r.has_image and r.metadata == {"surface": "web"}
    assert r.messages[2].model_extra == {"tool_calls": [{"id": "1"}]}


def test_failures_and_defaults_are_not_cached(tmp_path):
    cache = DecisionCache(tmp_path / "c")
    router_with(exc=DeciderError("boom"), cache=cache).decide("hello")
    router_with(Verdict(route="nope"), cache=cache).decide("hello")
    assert len(cache._cache) == 0
    ok = router_with(Verdict(route="code", scores={"code": 1.0}), cache=cache)
    assert ok.decide("hello").source == "model"
    again = ok.decide("  hello ")
    assert again.source == "cache" and again.route == "code" and ok.decider.calls == 1


def test_stale_cache_entry_for_a_removed_route_is_a_miss(tmp_path):
    cache = DecisionCache(tmp_path / "c")
    r = router_with(Verdict(route="code"), cache=cache)
    key = r._key("hello", False)
    cache.set(key, {"route": "deleted_route", "confidence": 0.9})
    d = r.decide("hello")
    assert d.source == "model" and d.route == "code"


def test_trie_scores_one_pass_when_first_tokens_differ():
    trie = build_trie({"a": [1, 9], "b": [2, 9], "c": [3, 4, 9]})
    assert passes_needed(trie) == 0
    logits = np.zeros(10)
    logits[[1, 2, 3]] = [np.log(2), 0.0, np.log(1)]
    calls = []
    s = score_routes(trie, lambda path: calls.append(list(path)) or logits)
    assert calls == [[]]
    assert s == pytest.approx({"a": 0.5, "b": 0.25, "c": 0.25})


def test_trie_walks_shared_prefixes():
    trie = build_trie({"code": [5, 9], "code_review": [5, 6, 9], "chat": [7, 9]})
    assert passes_needed(trie) == 1
    rows = {(): {5: 0.0, 7: 0.0}, (5,): {9: np.log(3), 6: 0.0}}

    def logits_after(path):
        row = np.full(10, -50.0)
        for k, v in rows[tuple(path)].items():
            row[k] = v
        return row

    s = score_routes(trie, logits_after)
    assert s == pytest.approx({"code": 0.375, "code_review": 0.125, "chat": 0.5})


def test_trie_rejects_ambiguous_names():
    with pytest.raises(ValueError):
        build_trie({"a": [1], "b": [1]})
    with pytest.raises(ValueError):
        build_trie({"a": [1], "b": [1, 2]})


class Rules:
    """A unit-level policy: pins "urgent" requests, limits others to code/chat, marks the result."""

    def before(self, request):
        from llmrouter.policy import PreDecision
        from llmrouter.types import Decision

        if "urgent" in request.text:
            return PreDecision(decision=Decision(route="math", source="rule", reason="rule: urgent"))
        return PreDecision(allowed=("code", "chat"))

    def after(self, request, decision):
        return decision.model_copy(update={"reason": (decision.reason or "") + " |after"})


def test_policy_rules_decide_or_restrict_and_after_always_runs():
    r = Router(CFG, decider=FakeDecider(Verdict(route="math", scores={"code": 0.1, "math": 0.6, "chat": 0.3})),
               policy=Rules())
    pinned = r.decide("urgent thing")
    assert (pinned.route, pinned.source) == ("math", "rule") and pinned.reason.endswith("|after")
    assert r.decider.calls == 0
    limited = r.decide("anything")
    assert limited.route == "chat" and limited.scores == pytest.approx({"code": 0.25, "chat": 0.75})
    assert limited.confidence == pytest.approx(0.75) and "restricted to code, chat" in limited.reason
