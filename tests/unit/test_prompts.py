import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmrouter.errors import ConfigError
from llmrouter.prompts import SENTINEL, RouterPrompt, parse_turns, pick_examples, precap_text, truncate_tokens


def test_render_splits_around_the_request(default_config):
    p = RouterPrompt.load("router-v1")
    r = p.render(default_config.table, examples_per_route=1)
    assert SENTINEL not in r.prefix + r.suffix
    assert r.prefix.startswith("<|im_start|>system\n")
    assert r.prefix.endswith("<|im_start|>user\n")
    assert r.suffix == "<|im_end|>\n<|im_start|>assistant\n"
    for route in default_config.table.routes:
        assert f"- {route.name}: {route.description}" in r.prefix


def test_version_is_content_hash():
    a, b = RouterPrompt("<<user>>\n{{ request }}"), RouterPrompt("<<user>>\nQ: {{ request }}")
    assert a.version != b.version
    assert a.version == RouterPrompt("<<user>>\n{{ request }}").version


def test_request_must_end_the_last_user_turn(default_config):
    with pytest.raises(ConfigError, match="must end the last"):
        RouterPrompt("<<user>>\n{{ request }}\n<<assistant>>\nok").render(default_config.table)
    with pytest.raises(ConfigError, match="unknown chat template family"):
        RouterPrompt("<<user>>\n{{ request }}").render(default_config.table, family="nope")
    with pytest.raises(ConfigError, match="template error"):
        RouterPrompt("{% for %}")
    with pytest.raises(ConfigError, match="no router prompt"):
        RouterPrompt.load("does-not-exist")


def test_parse_turns():
    assert parse_turns("junk\n<<system>>\nhi\n<<user>>\nthere") == [("system", "hi"), ("user", "there")]


def test_examples_interleave_routes(default_config):
    ex = pick_examples(default_config.table, 2)
    n = len(default_config.table.routes)
    assert [e["route"] for e in ex[:n]] == list(default_config.table.names)
    assert len(ex) == 2 * n


@given(st.lists(st.integers(0, 50_000), max_size=400), st.integers(1, 300),
       st.lists(st.integers(0, 50_000), min_size=0, max_size=5))
def test_truncation_keeps_head_and_tail_within_budget(tokens, budget, marker):
    out, cut = truncate_tokens(tokens, budget, marker)
    assert len(out) <= budget
    assert cut == (len(tokens) > budget)
    if not cut:
        assert out == tokens
    elif budget > len(marker):
        room = budget - len(marker)
        head = (room * 2 + 2) // 3
        assert out[:head] == tokens[:head]
        tail = room - head
        if tail:
            assert out[-tail:] == tokens[-tail:]
    assert truncate_tokens(tokens, budget, marker) == (out, cut)  # deterministic


@given(st.text(max_size=3000), st.integers(10, 1000))
def test_precap(text, n):
    out, cut = precap_text(text, n)
    assert cut == (len(text) > n)
    if cut:
        assert out.startswith(text[: n * 2 // 3]) and out.endswith(text[len(text) - (n - n * 2 // 3):])
    else:
        assert out == text
