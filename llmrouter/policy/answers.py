"""Where the policy meets an answer (called from completion.py): a target's own low-confidence
signal, the spend to charge, a failure that frees a session, and one `completion` event per
answer (route, target, tokens, cost, latency) for `llmrouter stats`."""

from __future__ import annotations

from typing import Any

import structlog

from llmrouter.types import Decision, Request

log = structlog.get_logger("llmrouter")


def _policy(router: Any) -> Any:
    return getattr(router, "policy", None)


def reconsider(router: Any, request: Request, decision: Decision | None, answer: str) -> Decision | None:
    """A decision one tier up when the answer signals low confidence (see [escalation]), else None."""
    policy = _policy(router)
    if decision is None or policy is None or not hasattr(policy, "reconsider"):
        return None
    return policy.reconsider(request, decision, answer)


def cost_usd(router: Any, target: str, prompt_tokens: int, completion_tokens: int) -> float:
    t = router.config.targets.get(target)
    if t is None:
        return 0.0
    return (prompt_tokens * t.input_price + completion_tokens * t.output_price) / 1e6


def settle(router: Any, request: Request, done: Any) -> None:
    """Charge the answer to its caller (spend caps) and log the `completion` event."""
    u = done.usage
    policy = _policy(router)
    if policy is not None and hasattr(policy, "settle"):
        cost = policy.settle(request, done.target, u.prompt_tokens, u.completion_tokens)
    else:
        cost = cost_usd(router, done.target, u.prompt_tokens, u.completion_tokens)
    meta = request.metadata
    log.info("completion", route=done.route, target=done.target, surface=str(meta.get("surface") or "") or None,
             tier=str(meta.get("tier") or "") or None, prompt_tokens=u.prompt_tokens,
             completion_tokens=u.completion_tokens, cost_usd=round(cost, 8), latency_ms=round(done.latency_ms, 1),
             fallbacks=sum(1 for a in done.attempts if a.outcome == "failed"),
             escalated_from=done.decision.escalated_from if done.decision else None)


def failed(router: Any, request: Request) -> None:
    """Every target failed: let the policy move the session next time."""
    policy = _policy(router)
    if policy is not None and hasattr(policy, "failed"):
        policy.failed(request)
