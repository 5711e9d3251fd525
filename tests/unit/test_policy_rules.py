"""Rules before the model, and the policy sections of a route table (no model, no sockets)."""

import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmrouter.config import Config
from llmrouter.errors import ConfigError
from llmrouter.policy import NoPolicy
from llmrouter.policy.engine import RoutingPolicy, build_policy
from llmrouter.policy.rules import Features, RuleSet, detect_language
from llmrouter.server.wire import http_metadata
from llmrouter.types import Request

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
POLICY_EXAMPLES = ["difficulty", "task-type", "tiers", "specialty", "escalation", "failover"]


def targets():
    url = "http://127.0.0.1:9/v1"
    return {"mini": {"model": "m", "base_url": url, "context_window": 4096},
            "eyes": {"model": "v", "base_url": url, "vision": True, "context_window": 8192},
            "long": {"model": "l", "base_url": url, "context_window": 200000}}


def cfg(rules=(), **extra):
    return Config.from_dict({
        "router": {"default_route": "chat"},
        "targets": targets(),
        "routes": [{"name": "chat", "description": "chat", "targets": ["mini"]},
                   {"name": "code", "description": "code", "targets": ["mini"]},
                   {"name": "vision", "description": "images", "targets": ["eyes"]},
                   {"name": "premium", "description": "hard", "targets": ["long"]}],
        "rules": list(rules), **extra,
    })


def req(text="hello there", images=False, **meta):
    content = [{"type": "text", "text": text}] + ([{"type": "image_url", "image_url": {"url": "x"}}] if images else [])
    return Request.of({"messages": [{"role": "user", "content": content}], "metadata": meta})


@pytest.mark.parametrize("text, code", [
    ("```python\nprint(1)\n```", True), ("def f(x):\n    return x", True), ("SELECT name FROM users", True),
    ("for (int i = 0; i < n; i++) {", True), ("What is the capital of France?", False),
    ("I love my dog; he is nice", False),
])
def test_code_detection(text, code):
    assert Features(req(text)).has_code is code


@pytest.mark.parametrize("text, lang", [
    ("What is the weather like today in the city?", "en"), ("Quelle est la capitale de la France et pour quoi", "fr"),
    ("Wie ist das Wetter und die Stadt ist nicht schön", "de"), ("Привет, как дела у тебя сегодня?", "ru"),
    ("今日はいい天気ですね", "ja"), ("你今天好吗我很好", "zh"), ("안녕하세요 반갑습니다", "ko"), ("ok", "und"),
])
def test_language_detection(text, lang):
    assert detect_language(text) == lang


def test_route_rule_decides_and_names_itself():
    rs = RuleSet(cfg([{"name": "code", "when": {"has_code": True}, "then": {"route": "code"}}]))
    out = rs.evaluate(req("```js\nx()\n```"))
    assert (out.route, out.rule) == ("code", "code")
    assert rs.evaluate(req("hello there")).route is None


def test_allow_and_deny_narrow_then_first_allowed_route_rule_wins():
    rs = RuleSet(cfg([
        {"name": "free", "when": {"user_tier": "free"}, "then": {"deny": ["premium"]}},
        {"name": "long", "when": {"min_chars": 20}, "then": {"route": "premium"}},
        {"name": "kw", "when": {"keywords": ["python"]}, "then": {"route": "code"}},
    ]))
    free = rs.evaluate(req("please write some Python for me", tier="free"))
    assert free.route == "code" and "premium" not in free.allowed
    assert "rule:long:not-allowed" in free.notes
    assert rs.evaluate(req("please write some Python for me", tier="paid")).route == "premium"


def test_pass_stops_evaluation():
    rs = RuleSet(cfg([{"name": "stop", "when": {"surface": "labs"}, "then": {"pass": True}},
                      {"name": "all", "then": {"route": "premium"}}]))
    assert rs.evaluate(req(surface="labs")).route is None
    assert rs.evaluate(req(surface="web")).route == "premium"


def test_pin_is_honoured_only_for_listed_routes():
    rs = RuleSet(cfg([{"name": "pin", "when": {"pin": ["code", "chat"]}, "then": {"use_pin": True}}]))
    assert rs.evaluate(req(pin="code")).route == "code"
    assert rs.evaluate(req(pin="premium")).route is None


def test_regex_language_tools_and_length_conditions():
    rs = RuleSet(cfg([{"name": "jp", "when": {"language": ["ja"]}, "then": {"route": "premium"}},
                      {"name": "tools", "when": {"tools": True}, "then": {"route": "code"}},
                      {"name": "ticket", "when": {"regex": r"\bJIRA-\d+\b", "max_chars": 40}, "then": {"route": "chat"}}]))
    assert rs.evaluate(req("今日はいい天気ですね")).route == "premium"
    assert rs.evaluate(req("call the weather tool", tools=["weather"])).route == "code"
    assert rs.evaluate(req("see JIRA-42")).route == "chat"
    assert rs.evaluate(req("see JIRA-42 " + "x" * 50)).route is None


def test_images_go_only_to_vision_routes_even_against_a_rule():
    rs = RuleSet(cfg([{"name": "all-code", "then": {"route": "code"}}]))
    out = rs.evaluate(req("what is in this picture?", images=True))
    assert out.route is None and out.allowed == ("vision",)
    assert "guard:image" in out.notes


def test_long_context_goes_only_where_it_fits():
    rs = RuleSet(cfg())
    assert rs.evaluate(req("short")).allowed is None
    out = rs.evaluate(req("word " * 20000))  # ~28k tokens: only the 200k window fits
    assert out.allowed == ("premium",)


def test_http_metadata_headers_win_and_tools_are_named():
    meta = http_metadata({"x-llmrouter-surface": "checkout", "x-llmrouter-tier": "paid"},
                         {"tier": "enterprise", "other": 1}, [{"type": "function", "function": {"name": "f"}}])
    assert meta == {"tier": "paid", "other": 1, "surface": "checkout", "tools": ["f"]}


@pytest.mark.parametrize("extra, message", [
    ({"rules": [{"name": "r", "when": {"regex": "("}, "then": {"route": "chat"}}]}, "does not compile"),
    ({"rules": [{"name": "r", "then": {"route": "nope"}}]}, "names route 'nope'"),
    ({"rules": [{"name": "r", "then": {"route": "chat", "deny": ["code"]}}]}, "exactly one of"),
    ({"rules": [{"name": "r", "then": {}}]}, "exactly one of"),
    ({"rules": [{"name": "r", "when": {"colour": "red"}, "then": {"pass": True}}]}, "unknown key"),
    ({"rules": [{"name": "r", "then": {"use_pin": True}}]}, "use_pin needs when.pin"),
    ({"surfaces": {"web": {"floor": "gold"}}}, "need every route to have a tier"),
    ({"escalation": {"min_confidence": 2}}, "less than or equal to 1"),
    ({"escalation": {"on_cap": "panic"}}, "escalation.on_cap"),
    ({"stickiness": {"ttl_s": 0}}, "stickiness.ttl_s"),
    ({"alerts": {"window_s": 600, "baseline_s": 60}}, "baseline_s must be longer"),
    ({"budget": {}}, "unknown top-level key"),
])
def test_bad_policy_sections_get_clear_messages(extra, message):
    with pytest.raises(ConfigError) as exc:
        cfg(**extra)
    assert message in str(exc.value)


def test_tier_names_must_be_in_the_order():
    data = {"router": {"default_route": "a"}, "tiers": {"order": ["small"]},
            "routes": [{"name": "a", "description": "a", "tier": "small"}, {"name": "b", "description": "b", "tier": "big"}]}
    with pytest.raises(ConfigError, match="tier 'big', which is not in"):
        Config.from_dict(data)


@pytest.mark.parametrize("name", POLICY_EXAMPLES)
def test_examples_load_round_trip_and_build_a_policy(name, tmp_path):
    config = Config.load(EXAMPLES / f"{name}.toml")
    again = tmp_path / "again.toml"
    again.write_text(config.to_toml())
    back = Config.load(again)
    assert back.policy == config.policy and back.table == config.table
    assert isinstance(build_policy(config), RoutingPolicy)


def test_a_table_without_policy_sections_builds_none_and_keeps_its_fingerprint(default_config):
    assert isinstance(build_policy(default_config), NoPolicy)
    tiered = tomllib.loads(default_config.to_toml())
    for r in tiered["routes"]:
        r["tier"] = "small"
    assert Config.from_dict(tiered).table.fingerprint == default_config.table.fingerprint


words = st.sampled_from(["python", "hello", "```", "def f():", "今日は", "JIRA-1", "translate", "x" * 300, "{}"])


@settings(max_examples=150, deadline=None)
@given(st.lists(words, min_size=1, max_size=6), st.booleans(), st.sampled_from(["free", "paid", ""]),
       st.sampled_from(["chat", "code", "vision", "premium", "bogus"]))
def test_rules_only_ever_name_routes_of_the_table(parts, images, tier, pin):
    rs = RuleSet(cfg([
        {"name": "free", "when": {"user_tier": "free"}, "then": {"deny": ["premium"]}},
        {"name": "pin", "when": {"pin": ["chat", "code", "premium"]}, "then": {"use_pin": True}},
        {"name": "code", "when": {"has_code": True}, "then": {"route": "code"}},
        {"name": "only-chat", "when": {"keywords": ["hello"]}, "then": {"allow": ["chat"]}},
    ]))
    out = rs.evaluate(req(" ".join(parts), images=images, tier=tier, pin=pin))
    names = set(rs.names)
    assert out.allowed is None or (out.allowed and set(out.allowed) <= names)
    if out.route is not None:
        assert out.route in names and (out.allowed is None or out.route in out.allowed)
        if tier == "free":
            assert out.route != "premium"
