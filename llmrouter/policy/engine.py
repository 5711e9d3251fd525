"""The routing policy a route table configures: rules and stickiness before the model; floors,
escalation, caps and alerts after it; spend and failures after the answer.

    before:  guards + [[rules]] -> decided, or the routes the model may pick
             surface floor      -> only routes at or above it
             spend cap          -> stay: only the cheapest qualifying routes | queue | reject
             session            -> its route, while allowed and its TTL runs
    after:   floor              -> a rule's or the model's route raised to the surface's floor
             confidence         -> below the surface's threshold: one tier up (if allowed)
             escalation cap     -> over max_rate: stay on the cheaper route | queue | reject
             record             -> rate window, spike alerts, session route
    answer:  reconsider         -> a target's own low-confidence answer: one tier up (capped too)
             settle / failed    -> spend per key and tier; a failed session forgets its route
"""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import AbstractContextManager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmrouter.config import Config, Target
from llmrouter.errors import PolicyRejected
from llmrouter.policy.alerts import Alerter
from llmrouter.policy.base import NoPolicy, Policy, PreDecision
from llmrouter.policy.limits import RateWindow, SpendLedger, caller_key, key_label
from llmrouter.policy.rules import RuleSet
from llmrouter.policy.sessions import SessionRoutes
from llmrouter.policy.tiers import Ladder
from llmrouter.state.link import Read, batch_on, read_all
from llmrouter.types import Decision, Request

if TYPE_CHECKING:
    from llmrouter.state import SharedState
    from llmrouter.state.limits import SharedLedger, SharedRateWindow
    from llmrouter.state.sessions import SharedSessions

_MAX_PENDING = 4096


class RoutingPolicy:
    """The Policy built from a table's [[rules]], [tiers], [surfaces], [escalation], [budgets],
    [stickiness] and [alerts]. Thread-safe; `clock` is injectable for tests. With `state`, the
    escalation window, the spend ledger and the sessions are shared by every process on its Redis."""

    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic,
                 state: SharedState | None = None) -> None:
        p = config.policy
        self.config, self.settings, self.clock = config, p, clock
        self.rules = RuleSet(config)
        self.ladder = Ladder(config)
        self.esc = p.escalation
        self.window: RateWindow | SharedRateWindow = RateWindow(p.escalation.window_s, clock)
        self.ledger: SpendLedger | SharedLedger = SpendLedger(p.budgets.window_s, clock)
        self.sessions: SessionRoutes | SharedSessions | None = (
            SessionRoutes(p.stickiness.ttl_s, p.stickiness.max_sessions, clock) if p.stickiness.enabled else None)
        self.state = state
        if state is not None:
            self._share(state, table_scope(config))
        self.alerter = Alerter(p.alerts, clock)
        self.markers = [re.compile(m) for m in p.escalation.answer_markers]
        self._pending: OrderedDict[int, tuple[tuple[str, ...] | None, tuple[str, ...]]] = OrderedDict()
        self._alerted: dict[str, float] = {}
        self._lock = threading.Lock()
        targets, table = config.targets, config.table
        first = {r.name: table.targets_of(r.name)[:1] for r in table.routes}
        self.price = {r: sum(targets[t].input_price + targets[t].output_price for t in ts) for r, ts in first.items()}

    def _share(self, state: SharedState, table: str) -> None:
        p = self.settings
        self.window = state.escalations(table, p.escalation.window_s)
        self.ledger = state.ledger(table, p.budgets.window_s)
        if self.sessions is not None:
            self.sessions = state.sessions(table, p.stickiness.ttl_s, p.stickiness.max_sessions)

    def _batched(self) -> AbstractContextManager[None]:
        """Writes that count at once (the escalation window, the session), sent together now."""
        return batch_on(self.state.link if self.state is not None else None, join=False)

    # --- before the model ------------------------------------------------------------------
    def before(self, request: Request) -> PreDecision | None:
        out = self.rules.evaluate(request)
        allowed, notes = out.allowed, out.notes
        surface_name, surface = self.ladder.surface(request)
        floor = self.ladder.floor_rank(surface) if self.ladder.tiered else 0
        if floor > self.ladder.base:
            above = self.ladder.at_or_above(floor, allowed)
            if above:
                allowed, notes = above, notes + (f"floor:{surface_name}",)
        session = str(request.metadata.get("session") or "")
        over, sticky = self._read(request)
        capped = over is not None
        if over is not None:
            allowed, notes = self._on_spend_cap(over, request, allowed, floor), notes + ("cap:spend",)
        self._remember(request, allowed, notes)
        if out.route is not None and not (capped and out.route not in (allowed or ())):
            # a floor raises a rule's route afterwards; only a spend cap overrules a rule
            return PreDecision(decision=Decision(route=out.route, source="rule", reason=f"rule {out.rule}",
                                                 rule=out.rule, policy=notes))
        if self.sessions is not None and session:
            route = sticky
            if route in self.config.table.names and (allowed is None or route in allowed):
                return PreDecision(decision=Decision(route=route, source="rule", reason="session stickiness",
                                                     rule="sticky", policy=notes + ("sticky",)))
        return PreDecision(allowed=allowed) if allowed is not None else None

    def _remember(self, request: Request, allowed: tuple[str, ...] | None, notes: tuple[str, ...]) -> None:
        with self._lock:
            self._pending[id(request)] = (allowed, notes)
            while len(self._pending) > _MAX_PENDING:  # `after` never came (a caller's own error)
                self._pending.popitem(last=False)

    def _caps(self, request: Request) -> list[tuple[str, str, float]]:
        """(scope, ledger name, cap) of each spend cap the request's caller is under."""
        b = self.settings.budgets
        key, tier = caller_key(request.metadata), str(request.metadata.get("tier") or "")
        caps: list[tuple[str, str, float]] = []
        if key and b.per_key is not None:
            caps.append(("key", key, b.per_key))
        if tier and tier in b.per_tier:
            caps.append(("tier", "tier:" + tier, b.per_tier[tier]))
        return caps

    def prefetch(self, request: Request) -> Read[None]:
        """What `before` reads from shared state, as a Read for a caller to send with its own (the
        server sends it with the key meter's checks: one round trip for both). `before` then uses
        the value read, in this context, for this same request."""
        return self._state_read(request).then(lambda value: _hold(request, value))

    def _read(self, request: Request) -> tuple[tuple[str, float, float] | None, str | None]:
        """The first spend cap the caller is over (scope, cap, seconds until it may spend again),
        and the session's route: prefetched, or read now in one round trip for both."""
        held = _ahead.get()
        if held is not None and held[0] is request:
            _ahead.set(None)
            return held[1]
        return read_all(self.state.link if self.state is not None else None, [self._state_read(request)])[0]

    def _state_read(self, request: Request) -> Read[tuple[tuple[str, float, float] | None, str | None]]:
        caps = self._caps(request)
        session = str(request.metadata.get("session") or "")
        names, limits = [name for _, name, _ in caps], [cap for _, _, cap in caps]
        spent = self.ledger.usage_read(names, limits) if caps else Read.known([])
        route = self.sessions.get_read(session) if self.sessions is not None and session else Read.known(None)

        def over_and_sticky(values: list[Any]) -> tuple[tuple[str, float, float] | None, str | None]:
            usage, sticky = values
            over = next(((scope, cap, retry) for (scope, _, cap), (used, retry) in zip(caps, usage) if used >= cap), None)
            return over, sticky
        return Read.all([spent, route]).then(over_and_sticky)

    def _on_spend_cap(self, over: tuple[str, float, float], request: Request, allowed: tuple[str, ...] | None,
                      floor: int) -> tuple[str, ...]:
        scope, cap, retry = over
        meta = request.metadata
        who = key_label(caller_key(meta)) if scope == "key" else f"tier:{meta.get('tier')}"
        on_cap = self.settings.budgets.on_cap
        self._alert_once(f"spend:{who}", self.settings.budgets.window_s / 24, "spend_cap", scope=scope, who=who,
                         tenant=str(meta.get("tenant") or "") or None, cap_usd=cap, action=on_cap)
        if on_cap != "stay":
            raise PolicyRejected(f"spend cap reached for this {scope} ({cap:g} USD per {self.settings.budgets.window_s:g}s)",
                                 code="spend_cap", status=429 if on_cap == "queue" else 403,
                                 retry_after=retry if on_cap == "queue" else None)
        pool = [r for r in (allowed or self.config.table.names) if self.ladder.rank[r] >= floor]
        pool = pool or list(allowed or self.config.table.names)
        cheapest = min((self.ladder.rank[r], self.price[r]) for r in pool)
        return tuple(r for r in pool if (self.ladder.rank[r], self.price[r]) == cheapest)

    def replay(self, decided: list[tuple[Request | str, Decision]]) -> list[Decision]:
        """Pass already-made decisions through this policy in order (offline: caps, floors...)."""
        out = []
        for text, decision in decided:
            req = Request.of(text)
            self.before(req)
            out.append(self.after(req, decision))
        return out

    # --- after the model -------------------------------------------------------------------
    def after(self, request: Request, decision: Decision) -> Decision:
        with self._lock:
            allowed, notes = self._pending.pop(id(request), (None, ()))
        steps = list(decision.policy or notes)
        surface_name, surface = self.ladder.surface(request)
        route, original, reasons = decision.route, decision.route, list[str]()
        if not self.ladder.tiered:
            return self._finish(request, decision, route, steps, reasons, up=False)
        ladder = self.ladder
        floor = ladder.floor_rank(surface)
        if ladder.rank[route] < floor:
            route = ladder.raise_to(route, floor, allowed)
            steps.append(f"floor:{surface_name}")
            reasons.append(f"raised from {original} to the {surface_name!r} floor")
        threshold = ladder.threshold(surface)
        if decision.source in ("model", "cheap", "cache") and decision.confidence is not None and decision.confidence < threshold:
            nxt = ladder.up(route)
            if nxt is not None and (allowed is None or nxt in allowed):
                reasons.append(f"escalated from {route}: confidence {decision.confidence:.2f} < {threshold:.2f}")
                steps.append("escalated:confidence")
                route = nxt
        required = max(ladder.base, floor)
        by_rule = decision.source == "rule" and decision.rule != "sticky"
        up = ladder.rank[route] > required and not by_rule
        if up and not self._cap_allows(surface_name):
            route = self._on_escalation_cap(surface_name, decision, original, allowed, required)
            steps.append("cap:escalation")
            reasons.append(f"escalation cap: stayed on {route}")
            up = False
        return self._finish(request, decision, route, steps, reasons, up=up)

    def _cap_allows(self, surface: str) -> bool:
        esc = self.esc
        if esc.max_rate is not None and not self.window.allows_up(esc.max_rate, esc.min_requests):
            return False
        if surface in esc.per_surface and not self.window.allows_up(esc.per_surface[surface], esc.min_requests, surface):
            return False
        return True

    def _on_escalation_cap(self, surface: str, decision: Decision, original: str, allowed: tuple[str, ...] | None,
                           required: int) -> str:
        esc = self.esc
        ups, total = self.window.rate()
        self._alert_once(f"escalation:{surface}", esc.window_s / 10, "escalation_cap", surface=surface or None,
                         rate=round(ups / total, 4) if total else None, max_rate=esc.max_rate,
                         per_surface=esc.per_surface.get(surface), action=esc.on_cap)
        if esc.on_cap != "stay":
            raise PolicyRejected(
                f"escalation cap reached{f' on surface {surface!r}' if surface else ''}: "
                f"this request would go above the {self.ladder.order[required]!r} tier",
                code="escalation_cap", status=429 if esc.on_cap == "queue" else 403,
                retry_after=max(1.0, self.window.retry_after()) if esc.on_cap == "queue" else None)
        pool = [r for r in (allowed or self.config.table.names) if self.ladder.rank[r] <= required]
        if not pool:
            return decision.route
        if original in pool:
            return original
        return max(pool, key=lambda r: (decision.scores.get(r, -1.0), self.ladder.rank[r], -self.price[r]))

    def _finish(self, request: Request, decision: Decision, route: str, steps: list[str], reasons: list[str],
                up: bool) -> Decision:
        surface = str(request.metadata.get("surface") or "")
        with self._batched():  # the window's count and the session: sent now, unwaited
            if self.ladder.tiered:
                self.window.record(surface, up)
            session = request.metadata.get("session")
            if self.sessions is not None and session:
                self.sessions.set(str(session), route)
        self.alerter.observe(route, up, surface)
        if route == decision.route and tuple(steps) == decision.policy:
            return decision
        update: dict[str, Any] = {"route": route, "policy": tuple(steps)}
        if route != decision.route:
            higher = self.ladder.rank[route] > self.ladder.rank[decision.route]
            update["escalated_from"] = decision.route if higher else decision.escalated_from
            update["confidence"] = decision.scores.get(route) if decision.scores else None
            update["reason"] = "; ".join(reasons) or decision.reason
        return decision.model_copy(update=update)

    def _alert_once(self, key: str, period: float, kind: str, **fields: Any) -> None:
        now = self.clock()
        with self._lock:
            if now - self._alerted.get(key, -1e18) < period:
                return
            self._alerted[key] = now
        self.alerter.emit(kind, **fields)

    # --- after the answer ------------------------------------------------------------------
    def reconsider(self, request: Request, decision: Decision, answer: str) -> Decision | None:
        """One tier up when the target's answer signals low confidence (an [escalation]
        answer_markers match), if allowed and under the caps; None to keep the answer."""
        if not self.markers or not answer or not any(m.search(answer) for m in self.markers):
            return None
        nxt = self.ladder.up(decision.route)
        if nxt is None:
            return None
        allowed = self.rules.evaluate(request).allowed
        if allowed is not None and nxt not in allowed:
            return None
        surface = str(request.metadata.get("surface") or "")
        if not self._cap_allows(surface):
            self._alert_once(f"escalation:{surface}", self.esc.window_s / 10, "escalation_cap",
                             surface=surface or None, max_rate=self.esc.max_rate, action="stay")
            return None
        with self._batched():  # counted now, not with the request's batch: the cap reads it
            self.window.record(surface, True)
            session = request.metadata.get("session")
            if self.sessions is not None and session:
                self.sessions.set(str(session), nxt)
        self.alerter.observe(nxt, True, surface)
        return decision.model_copy(update={
            "route": nxt, "escalated_from": decision.route, "confidence": decision.scores.get(nxt),
            "policy": decision.policy + ("escalated:answer",),
            "reason": f"escalated from {decision.route}: the answer signalled low confidence"})

    def settle(self, request: Request, target: Target, prompt_tokens: int, completion_tokens: int) -> float:
        """Charge an answer to its caller's key, tier and tenant; returns its cost in USD."""
        cost = target.cost_usd(prompt_tokens, completion_tokens)
        meta = request.metadata
        key, tier, tenant = caller_key(meta), str(meta.get("tier") or ""), str(meta.get("tenant") or "")
        # the caller's key, its user tier and its tenant (set by the server, from an API key)
        charged = (key, "tier:" + tier if tier else "", "tenant:" + tenant if tenant else "")
        self.ledger.add_each(tuple(k for k in charged if k), cost)
        return cost

    def on_alert(self, listener: Callable[[dict[str, Any]], None]) -> None:
        self.alerter.listeners.append(listener)

    def failed(self, request: Request) -> None:
        """Every target of the route failed: the session may move on its next turn."""
        session = request.metadata.get("session")
        if self.sessions is not None and session:
            self.sessions.forget(str(session))


# what `prefetch` read for a request, until its `before` (each HTTP request runs in its own context)
_ahead: ContextVar[tuple[Request, Any] | None] = ContextVar("llmrouter_policy_ahead", default=None)


def _hold(request: Request, value: Any) -> None:
    _ahead.set((request, value))


def build_policy(config: Config, state: SharedState | None = None) -> Policy:
    """The table's routing policy (its windows and sessions shared through `state`); a
    pass-through one when the table configures none."""
    return RoutingPolicy(config, state=state) if config.policy.active else NoPolicy()


def table_scope(config: Config) -> str:
    """Which shared windows and sessions a table uses: its file's stem (processes serving the same
    table share them; a different table never does)."""
    return Path(config.path).stem if config.path else "default"


def decision_log_fields(request: Request, config: Config) -> dict[str, Any]:
    """What a `decision` event says about the request: its surface and user tier, and (only with
    [replay] log_requests) its messages and metadata, for `llmrouter replay`."""
    meta = request.metadata
    out: dict[str, Any] = {k: str(meta[k]) for k in ("surface", "tier") if meta.get(k)}
    if config.policy.replay.log_requests:
        out["request"] = {"messages": [m.model_dump(mode="json", exclude_none=True) for m in request.messages],
                          "metadata": {k: v for k, v in meta.items() if k not in ("key",)}}
    return out
