"""The real default model, end to end through Router.decide."""

import pytest

from llmrouter import models
from llmrouter.deciders.llama import LlamaDecider
from llmrouter.errors import RequestError

pytestmark = pytest.mark.model

CLEAR = {
    "Write a Python function that reverses a linked list.": "code",
    "hi! how are you doing today?": "chat",
    "Translate 'where is the library' into Spanish.": "translation",
    "Write a short poem about the sea at night.": "creative",
    "Solve for x: 2x + 6 = 14.": "math",
    "Give me ten ideas for a team-building day.": "brainstorming",
}


def test_routes_clear_requests(model_router):
    got = {text: model_router.decide(text).route for text in CLEAR}
    right = sum(got[t] == want for t, want in CLEAR.items())
    assert right >= 5, got


def test_decision_is_a_distribution_over_the_table(model_only):
    model_router = model_only
    d = model_router.decide("Summarize this: the meeting moved to Friday because the room was booked.")
    assert d.source == "model" and d.decider == "fitted:exit@24"  # the packaged head stops at layer 24
    assert set(d.scores) == set(model_router.table.names)
    assert sum(d.scores.values()) == pytest.approx(1.0, abs=1e-6)
    assert d.route == max(d.scores, key=d.scores.get)
    assert d.confidence == d.scores[d.route]
    assert d.prompt_version == model_router.prompt.version and d.model == "smollm2-135m"
    assert d.timings.prefill_ms > 0 and d.timings.total_ms >= d.timings.prefill_ms
    assert 0 < d.request_tokens < 40 and not d.truncated


def test_same_request_same_decision(model_router):
    a = model_router.decide("What is the capital of Australia?")
    model_router.decide("Write a haiku about snow")
    b = model_router.decide("What is the capital of Australia?")
    assert a.route == b.route
    assert a.scores == pytest.approx(b.scores, abs=1e-4)  # the warm prefix is not polluted


def test_cache_hit_then_miss_on_change(cached_router):
    first = cached_router.decide("Explain how vaccines train the immune system")
    second = cached_router.decide("Explain  how vaccines train the immune system ")
    assert (first.source, second.source) == ("model", "cache")
    assert second.route == first.route and second.confidence == first.confidence
    assert cached_router.decide("Explain how vaccines train the immune system", explain=True).source == "model"


def test_huge_request_is_truncated_not_fatal(model_router):
    text = "Please summarize the following report. " + ("The quarterly numbers went up. " * 20000)
    d = model_router.decide(text)
    assert d.truncated and d.request_tokens <= model_router.config.router.max_request_tokens
    assert d.route in model_router.table.names


def test_chat_messages_route_on_the_last_user_turn(model_router):
    d = model_router.decide([
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "hello!"},
        {"role": "assistant", "content": "Hi, how can I help?"},
        {"role": "user", "content": "Write a SQL query that counts orders per customer."},
    ])
    alone = model_router.decide("Write a SQL query that counts orders per customer.")
    assert d.route == alone.route and d.scores == pytest.approx(alone.scores, abs=1e-4)
    assert d.route != model_router.decide("hello!").route


def test_explain_adds_a_reason(model_router):
    d = model_router.decide("Write a bash script that backs up my home folder", explain=True)
    assert isinstance(d.reason, str) and d.reason.strip()
    assert "\n" not in d.reason and '"' not in d.reason


def test_generate_mode_emits_a_valid_route(model_router):
    decider = model_router.decider
    mode = decider.mode
    decider.mode = "generate"
    try:
        v = decider.decide("Translate 'thank you' into Italian")
        explained = decider.decide("Translate 'thank you' into Italian", explain=True)
    finally:
        decider.mode = mode
    assert v.route in model_router.table.names and v.decider == "llama-generate"
    assert explained.route == v.route and explained.reason and "\n" not in explained.reason


def test_bad_input_is_a_request_error(model_router):
    for bad in ("", "   ", b"\xc3\x28", []):
        with pytest.raises(RequestError):
            model_router.decide(bad)


def test_prefix_from_disk_decides_like_a_computed_one(model_router, tmp_path):
    cfg = model_router.config
    path = models.resolve(cfg.router.model)
    args = (path, model_router.model_sha256, cfg.router, cfg.table, model_router.prompt)
    computed = LlamaDecider(*args, kv_dir=tmp_path)
    loaded = LlamaDecider(*args, kv_dir=tmp_path)
    assert (computed.prefix_source, loaded.prefix_source) == ("computed", "disk")
    text = "Which planet is the largest in the solar system?"
    a, b = computed.decide(text), loaded.decide(text)
    assert a.route == b.route
    assert a.scores == pytest.approx(b.scores, abs=1e-3)
    # a damaged prefix file is dropped and recomputed, never trusted
    for f in tmp_path.glob("*.kv"):
        f.write_bytes(b"garbage")
    again = LlamaDecider(*args, kv_dir=tmp_path)
    assert again.prefix_source == "computed"
    assert again.decide(text).scores == pytest.approx(a.scores, abs=1e-3)
