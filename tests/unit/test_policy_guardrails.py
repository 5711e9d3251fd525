"""Surfaces, escalation, caps, budgets, alerts and stickiness, through Router.decide with a
scripted decider and a clock the test moves (no model, no sleeping)."""

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from llmrouter.config import Config
from llmrouter.types import Verdict
from llmrouter.errors import PolicyRejected
from llmrouter.policy.engine import RoutingPolicy
from llmrouter.policy.limits import RateWindow, SpendLedger
from llmrouter.router import Router
from llmrouter.types import Request

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class Scripted:
    """Answers with the scores it is told (unit level); counts its calls."""

    name, model_id = "scripted", "scripted"

    def __init__(self, scores):
        self.scores, self.calls = scores, 0

    def decide(self, text, *, explain=False):
        self.calls += 1
        scores = self.scores(text) if callable(self.scores) else self.scores
        return Verdict(route=max(scores, key=scores.get), scores=scores)


def router_for(example_or_config, scores, clock=None, **sections):
    config = example_or_config if isinstance(example_or_config, Config) else Config.load(EXAMPLES / f"{example_or_config}.toml")
    if sections:
        config = Config.from_dict({**config.to_dict(), **sections})
    config = config.with_router(cache=False)
    clock = clock or Clock()
    decider = Scripted(scores)
    return Router(config, decider=decider, policy=RoutingPolicy(config, clock=clock)), decider, clock


def req(text="hi", **meta):
    return Request.of(text, **meta)


SURE_QUICK = {"quick": 0.9, "solid": 0.07, "deep": 0.03}
UNSURE_QUICK = {"quick": 0.5, "solid": 0.3, "deep": 0.2}


def test_difficulty_pattern_routes_by_the_model():
    r, _, _ = router_for("difficulty", lambda t: {"easy": 0.2, "hard": 0.8} if "prove" in t else {"easy": 0.9, "hard": 0.1})
    assert r.decide("prove Fermat's little theorem").route == "hard"
    assert r.decide("capital of France?").route == "easy"


def test_low_confidence_escalates_one_tier_and_says_so():
    r, _, _ = router_for("escalation", UNSURE_QUICK)
    d = r.decide(req())
    assert (d.route, d.escalated_from) == ("solid", "quick")
    assert "escalated:confidence" in d.policy and "0.50 < 0.60" in d.reason
    assert r.decide(req("hi again")).route == "solid"
    r2, _, _ = router_for("escalation", SURE_QUICK)
    assert r2.decide(req()).route == "quick"


def test_surface_preferences_set_the_escalation_threshold():
    r, _, _ = router_for("escalation", {"quick": 0.7, "solid": 0.2, "deep": 0.1})
    assert r.decide(req(surface="web")).route == "quick"  # balanced: 0.7 >= 0.6
    r, _, _ = router_for("escalation", UNSURE_QUICK)
    assert r.decide(req(surface="autocomplete")).route == "quick"  # latency: never escalates


def test_floor_narrows_the_model_and_raises_rules():
    r, decider, _ = router_for("escalation", SURE_QUICK)
    d = r.decide(req(surface="checkout"))
    assert d.route in ("solid", "deep") and "floor:checkout" in d.policy
    rules = [{"name": "tiny", "when": {"max_chars": 5}, "then": {"route": "quick"}}]
    r, decider, _ = router_for("escalation", SURE_QUICK, rules=rules)
    d = r.decide(req("hey", surface="checkout"))
    assert d.route == "solid" and d.escalated_from == "quick" and decider.calls == 0


def test_tier_pattern_free_users_never_reach_premium():
    r, _, _ = router_for("tiers", {"standard": 0.1, "premium": 0.9})
    assert r.decide(req(tier="free")).route == "standard"
    assert r.decide(req(tier="paid")).route == "premium"
    d = r.decide(req(tier="enterprise"))
    assert (d.route, d.source, d.rule) == ("premium", "rule", "enterprise-always-premium")


def test_escalation_cap_stays_on_the_cheaper_route_and_alerts():
    r, _, clock = router_for("difficulty", {"easy": 0.1, "hard": 0.9},
                             escalation={"max_rate": 0.2, "min_requests": 10, "window_s": 60})
    with capture_logs() as logs:
        routes = [r.decide(req(f"q{i}")).route for i in range(50)]
    assert routes.count("hard") <= 0.2 * 50
    assert routes.count("hard") >= 9  # the cap bounds, it does not block everything
    alerts = [e for e in logs if e["event"] == "alert"]
    assert alerts and alerts[0]["kind"] == "escalation_cap" and alerts[0]["action"] == "stay"
    capped = r.decide(req("one more"))
    assert capped.route == "easy" and "cap:escalation" in capped.policy
    clock.t += 61  # the window has passed: escalations are allowed again
    assert r.decide(req("later")).route == "hard"


def test_per_surface_cap_leaves_other_surfaces_alone():
    r, _, _ = router_for("difficulty", {"easy": 0.1, "hard": 0.9},
                         escalation={"per_surface": {"chat": 0.0}, "min_requests": 1})
    assert r.decide(req(surface="chat")).route == "easy"
    assert r.decide(req(surface="api")).route == "hard"


@pytest.mark.parametrize("on_cap, status", [("queue", 429), ("reject", 403)])
def test_cap_can_queue_or_reject(on_cap, status):
    r, _, _ = router_for("difficulty", {"easy": 0.1, "hard": 0.9},
                         escalation={"max_rate": 0.0, "min_requests": 1, "on_cap": on_cap, "window_s": 30})
    r.policy.window.record("", True)  # one escalation already in the window
    with pytest.raises(PolicyRejected) as exc:
        r.decide(req())
    assert exc.value.status == status and exc.value.code == "escalation_cap"
    assert (exc.value.retry_after or 0) > 0 if on_cap == "queue" else exc.value.retry_after is None
    assert not r.policy._pending  # nothing left behind by the refused request


def test_rules_and_floors_are_not_capped():
    rules = [{"name": "vip", "when": {"user_tier": "vip"}, "then": {"route": "hard"}}]
    r, _, _ = router_for("difficulty", {"easy": 0.9, "hard": 0.1}, rules=rules,
                         escalation={"max_rate": 0.0, "min_requests": 1})
    assert all(r.decide(req(f"{i}", tier="vip")).route == "hard" for i in range(5))


def test_spend_cap_per_key_stays_cheap_and_never_logs_the_key():
    secret = "sk-live-abcdefghijklmnop"
    r, _, _ = router_for("tiers", {"standard": 0.1, "premium": 0.9})
    assert r.decide(req(key=secret, tier="paid")).route == "premium"
    cost = r.policy.settle(req(key=secret, tier="paid"), r.config.targets["frontier"], 100_000, 50_000)  # 0.2 + 0.4 USD
    assert cost == pytest.approx(0.6)
    with capture_logs() as logs:
        d = r.decide(req(key=secret, tier="paid"))
    assert d.route == "standard" and "cap:spend" in d.policy
    alert = next(e for e in logs if e["event"] == "alert")
    assert alert["kind"] == "spend_cap" and alert["who"].startswith("key:") and secret not in repr(logs)
    assert r.decide(req(key="someone-else", tier="paid")).route == "premium"


def test_the_ledger_keeps_each_tenants_spend_and_its_alerts_name_the_tenant():
    r, _, _ = router_for("tiers", {"standard": 0.1, "premium": 0.9})
    acme = req("q", key="k1", tier="paid", tenant="acme")
    r.policy.settle(acme, r.config.targets["frontier"], 100_000, 50_000)
    assert r.policy.ledger.spent("tenant:acme") == pytest.approx(0.6) and r.policy.ledger.spent("tenant:other") == 0
    with capture_logs() as logs:
        r.decide(req("q", key="k1", tier="paid", tenant="acme"))
    alert = next(e for e in logs if e["event"] == "alert")
    assert alert["kind"] == "spend_cap" and alert["tenant"] == "acme"


def test_spend_cap_per_tier_can_reject():
    r, _, clock = router_for("tiers", {"standard": 0.9, "premium": 0.1},
                             budgets={"per_tier": {"free": 0.001}, "on_cap": "reject", "window_s": 100})
    r.policy.settle(req(tier="free", user="u1"), r.config.targets["mini"], 10_000, 0)
    with pytest.raises(PolicyRejected) as exc:
        r.decide(req(tier="free", user="u2"))
    assert exc.value.code == "spend_cap" and exc.value.status == 403
    clock.t += 101
    assert r.decide(req(tier="free", user="u2")).route == "standard"


def test_route_share_spike_alerts_against_its_baseline():
    hard = {"on": False}
    r, _, clock = router_for("difficulty", lambda t: {"easy": 0.1, "hard": 0.9} if hard["on"] else {"easy": 0.9, "hard": 0.1},
                             alerts={"window_s": 60, "baseline_s": 600, "min_requests": 10, "spike_factor": 2.0})
    for i in range(40):  # a quiet baseline: easy only
        r.decide(req(f"b{i}"))
        clock.t += 5
    hard["on"] = True
    with capture_logs() as logs:
        for i in range(12):
            r.decide(req(f"s{i}"))
            clock.t += 1
    kinds = {e["kind"] for e in logs if e["event"] == "alert"}
    assert {"route_share_spike", "escalation_spike"} <= kinds
    assert sum(e["event"] == "alert" and e["kind"] == "escalation_spike" for e in logs) == 1  # once per window


def test_sessions_stick_until_ttl_floor_or_failure():
    r, decider, clock = router_for("escalation", SURE_QUICK, stickiness={"enabled": True, "ttl_s": 100})
    assert r.decide(req("first", session="s1")).route == "quick"
    decider.scores = {"quick": 0.05, "solid": 0.05, "deep": 0.9}
    d = r.decide(req("second", session="s1"))
    assert (d.route, d.rule) == ("quick", "sticky") and decider.calls == 1
    assert r.decide(req("other", session="s2")).route == "deep"
    moved = r.decide(req("third", session="s1", surface="checkout"))  # the floor forces a move
    assert moved.route != "quick"
    r.policy.failed(req(session="s2"))
    assert r.decide(req("again", session="s2")).rule is None  # forgotten: the model decides
    clock.t += 101
    assert r.decide(req("late", session="s1")).rule is None


def test_answer_marker_escalates_once_within_caps():
    r, _, _ = router_for("escalation", SURE_QUICK)
    d = r.decide(req())
    better = r.policy.reconsider(req(), d, "Hmm, I'm not sure about that.")
    assert (better.route, better.escalated_from) == ("solid", "quick") and "escalated:answer" in better.policy
    assert r.policy.reconsider(req(), d, "Paris.") is None
    assert r.policy.reconsider(req(), better.model_copy(update={"route": "deep"}), "I am not sure") is None  # top


def test_rate_window_and_ledger_slide():
    clock = Clock()
    w = RateWindow(10, clock)
    for up in (True, False, False, False):
        w.record("web", up)
    assert w.rate() == (1, 4) and w.rate("web") == (1, 4) and w.rate("app") == (0, 0)
    assert w.allows_up(0.5, 1) and not w.allows_up(0.25, 1)
    assert w.retry_after() == pytest.approx(10)
    clock.t += 10
    assert w.rate() == (0, 0)
    ledger = SpendLedger(10, clock, max_keys=2)
    ledger.add("a", 1.0)
    ledger.add("b", 2.0)
    ledger.add("c", 3.0)  # "a" is forgotten: bounded memory
    assert (ledger.spent("a"), ledger.spent("c")) == (0.0, 3.0)
    clock.t += 11
    assert ledger.spent("c") == 0.0


def test_a_prefetched_read_serves_only_its_own_request():
    """The server reads the policy's state with the key meter's (`prefetch`); `before` then uses
    that value for that request, and reads afresh for any other."""
    from llmrouter.state.link import read_all

    r, decider, _ = router_for("escalation", SURE_QUICK, stickiness={"enabled": True, "ttl_s": 100})
    ahead = req("second", session="s1")
    read_all(None, [r.policy.prefetch(ahead)])  # read before s1 has a route
    assert r.decide(req("first", session="s1")).route == "quick"  # now it has one
    decider.scores = {"quick": 0.05, "solid": 0.05, "deep": 0.9}
    assert r.decide(req("other", session="s1")).rule == "sticky"  # read afresh: sticky
    assert r.decide(ahead).rule is None  # the value read ahead: no route yet, the model decides
    assert r.decide(req("third", session="s1")).rule == "sticky"
