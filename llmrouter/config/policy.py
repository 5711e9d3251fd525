"""The policy sections of a route table: rules, tiers, surfaces, escalation, budgets, stickiness.

    [[rules]]            name, when = {...}, then = {route | allow | deny | use_pin | pass}
    [tiers]              order = ["small", "frontier"]   (cheapest first; routes say `tier = ...`)
    [surfaces.NAME]      floor = "<tier>", prefer = "latency" | "balanced" | "quality"
    [escalation]         min_confidence, answer_markers, max_rate, window_s, per_surface, on_cap
    [budgets]            window_s, per_key, per_tier, on_cap
    [stickiness]         enabled, ttl_s
    [alerts]             spike_factor, baseline_s, min_requests
    [replay]             log_requests (off: logs never hold request text unless asked)

Every section is optional; a table without any of them routes exactly as before. Checks that
need the whole table (a rule naming a route that does not exist...) live in `check_policy`.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from llmrouter.config.base import Strict
from llmrouter.config.routes import RouteTable

OnCap = Literal["stay", "queue", "reject"]


class When(Strict):
    """A rule's conditions: every one given must hold (an empty `when` always matches)."""

    min_chars: int | None = Field(None, ge=0)
    max_chars: int | None = Field(None, ge=0)
    has_code: bool | None = None
    has_image: bool | None = None
    tools: bool | None = None
    language: tuple[str, ...] = ()
    regex: str | None = None
    keywords: tuple[str, ...] = ()
    user_tier: tuple[str, ...] = ()
    surface: tuple[str, ...] = ()
    pin: tuple[str, ...] = ()

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"regex {v!r} does not compile: {exc}") from None
        return v

    @field_validator("language", "keywords", "user_tier", "surface", "pin", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return (v,) if isinstance(v, str) else v


class Then(Strict):
    """What a matching rule does: pick a route, narrow the routes the model may pick, or pass."""

    route: str | None = None
    allow: tuple[str, ...] | None = None
    deny: tuple[str, ...] | None = None
    use_pin: bool = False
    pass_: bool = Field(False, alias="pass")

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _exactly_one(self) -> Then:
        given = [k for k, v in (("route", self.route), ("allow", self.allow), ("deny", self.deny),
                                ("use_pin", self.use_pin or None), ("pass", self.pass_ or None)) if v is not None]
        if len(given) != 1:
            raise ValueError("`then` needs exactly one of route, allow, deny, use_pin, pass "
                             f"(got {', '.join(given) or 'none'})")
        return self


class Rule(Strict):
    """A deterministic rule, evaluated before the model in the order the table lists them."""

    name: str = Field(min_length=1, max_length=60)
    when: When = Field(default_factory=When)
    then: Then


class Tiers(Strict):
    """Route tiers from cheapest to costliest; escalation moves one step up this order."""

    order: tuple[str, ...] = ()

    @field_validator("order")
    @classmethod
    def _unique(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(v)) != len(v):
            raise ValueError("tier names repeat")
        return v


class Surface(Strict):
    """A product surface: the tier it may never go below and how it trades latency for quality."""

    floor: str | None = None
    prefer: Literal["latency", "balanced", "quality"] = "balanced"
    min_confidence: float | None = Field(None, ge=0, le=1)


class Escalation(Strict):
    """When a request moves up a tier, and how many may (share of decisions above the cheapest tier)."""

    min_confidence: float = Field(0.0, ge=0, le=1)
    answer_markers: tuple[str, ...] = ()
    max_rate: float | None = Field(None, ge=0, le=1)
    per_surface: dict[str, float] = Field(default_factory=dict)
    window_s: float = Field(300.0, gt=0)
    min_requests: int = Field(20, ge=1)
    on_cap: OnCap = "stay"
    queue_retry_s: float = Field(5.0, gt=0)

    @field_validator("answer_markers")
    @classmethod
    def _markers_compile(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for m in v:
            try:
                re.compile(m)
            except re.error as exc:
                raise ValueError(f"answer marker {m!r} does not compile: {exc}") from None
        return v

    @field_validator("per_surface")
    @classmethod
    def _rates(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, r in v.items() if not 0 <= r <= 1]
        if bad:
            raise ValueError(f"per_surface rates must be between 0 and 1 ({', '.join(bad)})")
        return v


class Budgets(Strict):
    """Spend caps in USD over a sliding window: per caller key, and per user tier (all its keys)."""

    window_s: float = Field(86400.0, gt=0)
    per_key: float | None = Field(None, ge=0)
    per_tier: dict[str, float] = Field(default_factory=dict)
    on_cap: OnCap = "stay"


class Stickiness(Strict):
    """Keep a conversation (metadata `session`) on the route it started on, for `ttl_s`."""

    enabled: bool = False
    ttl_s: float = Field(1800.0, gt=0)
    max_sessions: int = Field(100_000, ge=1)


class Alerts(Strict):
    """Alert when a route's share (or the escalation rate) jumps above its recent baseline."""

    spike_factor: float = Field(2.0, gt=1)
    min_delta: float = Field(0.1, ge=0, le=1)
    window_s: float = Field(300.0, gt=0)
    baseline_s: float = Field(3600.0, gt=0)
    min_requests: int = Field(20, ge=1)

    @model_validator(mode="after")
    def _baseline_longer(self) -> Alerts:
        if self.baseline_s <= self.window_s:
            raise ValueError("alerts.baseline_s must be longer than alerts.window_s")
        return self


class Replay(Strict):
    """Log each request's messages and metadata with its decision, so `llmrouter replay` can
    re-decide them. Off by default: with it on, the logs hold user text."""

    log_requests: bool = False


class PolicySettings(Strict):
    """All policy sections of a table (each optional)."""

    rules: tuple[Rule, ...] = ()
    tiers: Tiers = Field(default_factory=Tiers)
    surfaces: dict[str, Surface] = Field(default_factory=dict)
    escalation: Escalation = Field(default_factory=Escalation)
    budgets: Budgets = Field(default_factory=Budgets)
    stickiness: Stickiness = Field(default_factory=Stickiness)
    alerts: Alerts = Field(default_factory=Alerts)
    replay: Replay = Field(default_factory=Replay)

    SECTIONS: ClassVar[tuple[str, ...]] = ("rules", "tiers", "surfaces", "escalation", "budgets", "stickiness", "alerts", "replay")

    @property
    def active(self) -> bool:
        """Whether any section asks the router to do something (else no policy is built)."""
        return bool(self.rules or self.surfaces or self.escalation.min_confidence or self.escalation.answer_markers
                    or self.escalation.max_rate is not None or self.escalation.per_surface
                    or self.budgets.per_key is not None or self.budgets.per_tier or self.stickiness.enabled
                    or self.tiers.order)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_defaults=True, by_alias=True)


def tier_order(policy: PolicySettings, table: RouteTable) -> tuple[str, ...]:
    """The tiers from cheapest to costliest: [tiers] order, else in the order routes name them."""
    if policy.tiers.order:
        return policy.tiers.order
    seen: list[str] = []
    for r in table.routes:
        if r.tier and r.tier not in seen:
            seen.append(r.tier)
    return tuple(seen)


def check_policy(p: PolicySettings, table: RouteTable) -> list[str]:
    """Everything in the policy sections that does not fit the route table, one line each."""
    names = set(table.names)
    problems: list[str] = []

    def routes_ok(where: str, routes: tuple[str, ...] | None) -> None:
        for r in routes or ():
            if r not in names:
                problems.append(f"{where} names route {r!r}, which is not in the table "
                                f"(routes: {', '.join(sorted(names))})")

    seen_rules: set[str] = set()
    for i, rule in enumerate(p.rules):
        where = f"rules[{i}] ({rule.name})"
        if rule.name in seen_rules:
            problems.append(f"{where}: duplicate rule name")
        seen_rules.add(rule.name)
        routes_ok(where, (rule.then.route,) if rule.then.route else ())
        routes_ok(where, rule.then.allow)
        routes_ok(where, rule.then.deny)
        routes_ok(where, rule.when.pin)
        if rule.then.use_pin and not rule.when.pin:
            problems.append(f"{where}: use_pin needs when.pin, the routes a pin may name")
    order = tier_order(p, table)
    tiered = [r for r in table.routes if r.tier]
    if p.tiers.order:
        for r in tiered:
            if r.tier not in order:
                problems.append(f"route {r.name!r} has tier {r.tier!r}, which is not in [tiers] order "
                                f"({', '.join(order)})")
    needs_tiers = [f"surfaces.{n}.floor" for n, s in p.surfaces.items() if s.floor]
    if p.escalation.min_confidence or p.escalation.answer_markers:
        needs_tiers.append("escalation")
    if p.escalation.max_rate is not None or p.escalation.per_surface:
        needs_tiers.append("escalation.max_rate")
    if needs_tiers and len(tiered) != len(table.routes):
        untiered = [r.name for r in table.routes if not r.tier]
        problems.append(f"{', '.join(needs_tiers)} need every route to have a tier "
                        f"(no tier: {', '.join(untiered)})")
    for n, s in p.surfaces.items():
        if s.floor and s.floor not in order and s.floor not in names:
            problems.append(f"surfaces.{n}.floor {s.floor!r} is neither a tier ({', '.join(order) or 'none'}) "
                            "nor a route")
    for r in table.routes:
        if r.escalate_to:
            routes_ok(f"route {r.name!r} escalate_to", (r.escalate_to,))
            if r.escalate_to == r.name:
                problems.append(f"route {r.name!r} escalates to itself")
    return problems
