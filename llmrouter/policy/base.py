"""The places a policy acts: before the model (rules), after it (floors, escalation, caps), and
after the answer (a target's own "not sure", spend, a failed route).

    request -> Policy.before -> [decided by a rule] or [cache / decider, restricted to `allowed`]
            -> Policy.after -> Decision -> targets -> Policy.reconsider -> Policy.settle | failed
"""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Callable
from typing import Any, Protocol

from llmrouter.config import Target
from llmrouter.state.link import Read
from llmrouter.types import Decision, Request


@dataclass(frozen=True)
class PreDecision:
    """What rules say before the model: a decision outright, or the routes the model may pick."""

    decision: Decision | None = None
    allowed: tuple[str, ...] | None = None


class Policy(Protocol):
    """Everything a routing policy is asked, in the order a request meets it."""

    def prefetch(self, request: Request) -> Read[None]:
        """What `before` will read from shared state, to be read by the caller with its own reads
        (in one round trip); `before` then uses it."""
        ...

    def before(self, request: Request) -> PreDecision | None:
        """Before the cache and the model: decide outright, narrow the routes, or pass (None)."""
        ...

    def after(self, request: Request, decision: Decision) -> Decision:
        """The decision as it leaves the router (floors, escalation, caps applied)."""
        ...

    def reconsider(self, request: Request, decision: Decision, answer: str) -> Decision | None:
        """A decision one tier up when the answer signals low confidence, else None."""
        ...

    def settle(self, request: Request, target: Target, prompt_tokens: int, completion_tokens: int) -> float:
        """Charge an answer to its caller; returns its cost in USD."""
        ...

    def failed(self, request: Request) -> None:
        """Every target of the route failed."""
        ...

    def on_alert(self, listener: Callable[[dict[str, Any]], None]) -> None:
        """Call `listener` with every alert event (caps hit, spikes) from now on."""
        ...


class NoPolicy:
    """The policy of a table without policy sections: every hook passes the request through."""

    def prefetch(self, request: Request) -> Read[None]:
        return Read.known(None)

    def before(self, request: Request) -> PreDecision | None:
        return None

    def after(self, request: Request, decision: Decision) -> Decision:
        return decision

    def reconsider(self, request: Request, decision: Decision, answer: str) -> Decision | None:
        return None

    def settle(self, request: Request, target: Target, prompt_tokens: int, completion_tokens: int) -> float:
        return target.cost_usd(prompt_tokens, completion_tokens)

    def failed(self, request: Request) -> None:
        return None

    def on_alert(self, listener: Callable[[dict[str, Any]], None]) -> None:
        return None  # no caps, no spikes: nothing to alert on


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
