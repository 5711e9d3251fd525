"""`[fallback]` in the route table: validated, round-tripped, and the policy the chain uses."""

from __future__ import annotations

import pytest

from llmrouter.completion import chain_for
from llmrouter.config import Config
from llmrouter.errors import ConfigError
from llmrouter.fallback import FallbackPolicy

BASE = {
    "router": {"cache": False},
    "targets": {"a": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}},
    "routes": [{"name": "x", "description": "anything", "targets": ["a"]}],
}


def test_defaults_match_the_fallback_policy():
    cfg = Config.from_dict(BASE)
    assert cfg.fallback.policy() == FallbackPolicy()
    assert "fallback" not in cfg.to_dict()


def test_values_reach_the_policy_and_round_trip():
    cfg = Config.from_dict({**BASE, "fallback": {"deadline_s": 7.5, "max_retries": 0, "decide_wait_s": 2}})
    p = cfg.fallback.policy()
    assert (p.deadline_s, p.max_retries, p.decide_wait_s) == (7.5, 0, 2)
    assert p.breaker_failures == FallbackPolicy().breaker_failures
    again = Config.from_dict(cfg.to_dict())
    assert again.fallback == cfg.fallback
    assert cfg.fallback.policy(deadline_s=3.0, max_retries=None).deadline_s == 3.0  # an override wins
    assert cfg.fallback.policy(max_retries=None).max_retries == 0  # None does not override


@pytest.mark.parametrize("bad, where", [({"deadline_s": 0}, "deadline_s"), ({"max_retries": -1}, "max_retries"),
                                        ({"deadlin_s": 5}, "deadlin_s"), ({"breaker_failures": 0}, "breaker_failures")])
def test_bad_values_are_config_errors_that_name_the_key(bad, where):
    with pytest.raises(ConfigError, match=where):
        Config.from_dict({**BASE, "fallback": bad})


def test_the_chain_takes_the_tables_policy():
    class R:  # the chain only reads the router's config (and keys it weakly)
        config = Config.from_dict({**BASE, "fallback": {"deadline_s": 4.0, "breaker_cooldown_s": 9}})

    r = R()
    chain = chain_for(r)
    assert chain.policy.deadline_s == 4.0 and chain.policy.breaker_cooldown_s == 9
    other = FallbackPolicy(deadline_s=1.0)
    assert chain_for(r, other).policy == other  # an explicit policy (serve flags) replaces it
