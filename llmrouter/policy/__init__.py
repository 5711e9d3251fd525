"""Routing policy: deterministic rules before the model, guardrails after it.

    base.py      the Policy protocol (every hook), NoPolicy, PreDecision, restrict
    engine.py    RoutingPolicy: the policy a route table's sections configure
    rules.py     [[rules]] and the always-on guards (images, context length)
    tiers.py     tiers and surfaces: ranks, floors, one step up
    limits.py    sliding windows: the escalation rate and the spend per key and tier
    sessions.py  session stickiness
    alerts.py    alert events: caps hit, spikes
"""

from llmrouter.policy.base import NoPolicy, Policy, PreDecision, restrict

__all__ = ["NoPolicy", "Policy", "PreDecision", "restrict"]
