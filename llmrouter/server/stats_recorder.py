"""From the server's answers, errors, feedback and alerts to the dashboard's StatsStore events.

Savings: what an answer would have cost on the first target of the table's most expensive route
(the highest input + output price), and on the first target of `[dashboard] baseline_route`,
from the answer's own token usage, minus what it cost.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from llmrouter.config import Config, Target
from llmrouter.fallback import safe_log
from llmrouter.types import Attempt, Completion, Decision, Request
from llmrouter.server.stats_store import Event, StatsStore

TEXT_KEPT = 200  # characters of request text, where the table opts in
F = TypeVar("F", bound=Callable[..., None])


def never_raises(method: F) -> F:
    """A counting method that logs its own failure (where, never the request) instead of raising."""
    @functools.wraps(method)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            method(*args, **kwargs)
        except Exception as exc:  # a bug in counting must never fail the answer it counts
            safe_log("warning", "stats_record_failed", error_type=type(exc).__name__, method=method.__name__)

    return guarded  # type: ignore[return-value]


def first_target(config: Config, route: str) -> Target | None:
    names = config.table.targets_of(route)
    return config.targets.get(names[0]) if names else None


def top_route(config: Config) -> str:
    """The route whose first target has the highest price (input + output, per million tokens)."""
    def price(route: str) -> float:
        t = first_target(config, route)
        return t.input_price + t.output_price if t is not None else -1.0

    return max(config.table.names, key=price)


def source_of(decision: Decision | None) -> str:
    if decision is None:
        return "bypass"
    return "sticky" if decision.rule == "sticky" else decision.source


class Recorder:
    """Counts each finished request of a route table into the store (never raises on the request path)."""

    def __init__(self, store: StatsStore, surface_of: Any) -> None:
        self.store, self.surface_of = store, surface_of

    @never_raises
    def answered(self, config: Config, done: Completion, request: Request, e2e_s: float) -> None:
        u = done.usage
        d = done.decision
        top = first_target(config, top_route(config))
        baseline = config.dashboard.baseline_route
        base = first_target(config, baseline) if baseline else None
        self.store.record(Event(
            ts=time.time(), route=done.route or "-", target=done.target, surface=self.surface_of(request),
            tenant=str(request.metadata.get("tenant") or ""), source=source_of(d), status=200,
            escalated_from=(d.escalated_from or "") if d else "",
            cap_hit=any(p.startswith("cap:") for p in d.policy) if d else False,
            fallbacks=sum(1 for a in done.attempts if a.outcome == "failed"), cost=done.cost_usd,
            cost_top=top.cost_usd(u.prompt_tokens, u.completion_tokens) if top else done.cost_usd,
            cost_base=base.cost_usd(u.prompt_tokens, u.completion_tokens) if base else 0.0,
            confidence=d.confidence if d else None, decision_ms=d.timings.total_ms if d else None,
            e2e_ms=e2e_s * 1000, text=request.text[:TEXT_KEPT] if config.dashboard.request_text else None))

    @never_raises
    def failed(self, route: str, request: Request | None, status: int, e2e_s: float,
               decision: Decision | None = None, target: str = "") -> None:
        self.store.record(Event(
            ts=time.time(), route=route or "-", target=target, surface=self.surface_of(request),
            tenant=str(request.metadata.get("tenant") or "") if request is not None else "",
            source=source_of(decision) if decision is not None else "", status=status, e2e_ms=e2e_s * 1000,
            confidence=decision.confidence if decision else None,
            decision_ms=decision.timings.total_ms if decision else None))

    @never_raises
    def attempt(self, a: Attempt) -> None:
        if a.outcome == "failed":
            self.store.failed_attempt(a.target)

    @never_raises
    def alert(self, event: dict[str, Any]) -> None:
        self.store.alert(str(event.get("kind")), {k: v for k, v in event.items() if k != "kind"})
