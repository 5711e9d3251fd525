"""`[fallback]` in the route table: validated, round-tripped, and the policy the chain uses."""

from __future__ import annotations

import pytest

from llmrouter.config import Config
from llmrouter.errors import ConfigError
from llmrouter.router import Router
from llmrouter.testing import FixedDecider
from llmrouter.config import FallbackPolicy

BASE = {
    "router": {"cache": False},
    "targets": {"a": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}},
    "routes": [{"name": "x", "description": "anything", "targets": ["a"]}],
}


def test_defaults_match_the_fallback_policy():
    cfg = Config.from_dict(BASE)
    assert cfg.fallback == FallbackPolicy()
    assert "fallback" not in cfg.to_dict()


def test_values_reach_the_policy_and_round_trip():
    cfg = Config.from_dict({**BASE, "fallback": {"deadline_s": 7.5, "max_retries": 0, "decide_wait_s": 2}})
    p = cfg.fallback
    assert (p.deadline_s, p.max_retries, p.decide_wait_s) == (7.5, 0, 2)
    assert p.breaker_failures == FallbackPolicy().breaker_failures
    again = Config.from_dict(cfg.to_dict())
    assert again.fallback == cfg.fallback
    assert cfg.fallback.with_overrides(deadline_s=3.0, max_retries=None).deadline_s == 3.0  # an override wins
    assert cfg.fallback.with_overrides(max_retries=None).max_retries == 0  # None does not override


@pytest.mark.parametrize("bad, where", [({"deadline_s": 0}, "deadline_s"), ({"max_retries": -1}, "max_retries"),
                                        ({"deadlin_s": 5}, "deadlin_s"), ({"breaker_failures": 0}, "breaker_failures")])
def test_bad_values_are_config_errors_that_name_the_key(bad, where):
    with pytest.raises(ConfigError, match=where):
        Config.from_dict({**BASE, "fallback": bad})


def test_the_chain_takes_the_tables_policy():
    cfg = Config.from_dict({**BASE, "fallback": {"deadline_s": 4.0, "breaker_cooldown_s": 9}})
    router = Router(cfg, decider=FixedDecider("x"))  # no model: the chain only reads the config
    assert router.chain.policy.deadline_s == 4.0 and router.chain.policy.breaker_cooldown_s == 9
    other = FallbackPolicy(deadline_s=1.0)
    router.use_fallback(other)  # an explicit policy (serve flags) replaces it
    assert router.chain.policy == other and router.answers.chain is router.chain


def test_a_targets_own_max_retries_wins_over_the_tables():
    cfg = Config.from_dict({**BASE, "targets": {"a": {**BASE["targets"]["a"], "max_retries": 0}},
                            "fallback": {"max_retries": 3}})
    assert cfg.targets["a"].max_retries == 0 and cfg.fallback.max_retries == 3
    assert Config.from_dict(cfg.to_dict()).targets["a"].max_retries == 0  # round-trips
    with pytest.raises(ConfigError, match="max_retries"):
        Config.from_dict({**BASE, "targets": {"a": {**BASE["targets"]["a"], "max_retries": -1}}})


def test_batches_are_on_by_default_only_with_gpu_offload():
    from llmrouter.config import RouterSettings

    assert RouterSettings().batch_limit == 1  # a CPU: a batched pass costs more per request
    assert RouterSettings(gpu_layers=-1).batch_limit == 8
    assert RouterSettings(max_batch=4).batch_limit == 4
