"""The two places a policy acts: before the model (rules) and after it (floors, escalation, caps).

    request -> Policy.before -> [decided by a rule] or [cache / decider, restricted to `allowed`]
            -> Policy.after -> Decision
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from llmrouter.types import Decision, Request


@dataclass(frozen=True)
class PreDecision:
    """What rules say before the model: a decision outright, or the routes the model may pick."""

    decision: Decision | None = None
    allowed: tuple[str, ...] | None = None


class Policy(Protocol):
    def before(self, request: Request) -> PreDecision | None: ...

    def after(self, request: Request, decision: Decision) -> Decision: ...


def restrict(decision: Decision, allowed: tuple[str, ...], default: str) -> Decision:
    """The decision with its route limited to `allowed`: the best-scored allowed route, with the
    scores renormalised over the allowed routes (the model's enum is the whole table; rules narrow
    it afterwards, so the cache and the KV prefix stay shared by every rule)."""
    if not allowed:
        return decision
    scores = {r: s for r, s in decision.scores.items() if r in allowed}
    total = sum(scores.values())
    if total > 0:
        scores = {r: s / total for r, s in scores.items()}
        route = max(scores, key=scores.__getitem__)
    else:
        route = decision.route if decision.route in allowed else (default if default in allowed else allowed[0])
        scores = {}
    if route == decision.route and not total:
        return decision
    note = f"restricted to {', '.join(allowed)}"
    reason = decision.reason if route == decision.route else f"{note} (model chose {decision.route})"
    return decision.model_copy(update={
        "route": route,
        "scores": scores,
        "confidence": scores.get(route, decision.confidence if route == decision.route else None),
        "reason": reason,
    })
