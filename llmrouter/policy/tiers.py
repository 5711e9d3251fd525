"""Tiers and surfaces: where a route stands in cost, and what each product surface may never go below.

A route's rank is its tier's index in `[tiers] order` (0 = cheapest). Escalating moves a route
to its `escalate_to`, else to the first route (in table order) of the next tier up. A surface's
floor is a tier (or a route, meaning that route's tier); its `prefer` sets how readily a
low-confidence decision escalates: latency never, balanced at [escalation] min_confidence,
quality halfway between that and 1 (a surface's own `min_confidence` overrides both).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmrouter.config.policy import Surface, tier_order

if TYPE_CHECKING:
    from llmrouter.config import Config
    from llmrouter.types import Request

NO_SURFACE = Surface()


class Ladder:
    """Route ranks, escalation steps and surface floors for one route table."""

    def __init__(self, config: Config) -> None:
        self.order = tier_order(config.policy, config.table)
        self.names = config.table.names
        self.rank = {r.name: (self.order.index(r.tier) if r.tier in self.order else 0) for r in config.table.routes}
        self.base = min(self.rank.values(), default=0)
        self.surfaces = config.policy.surfaces
        self.min_confidence = config.policy.escalation.min_confidence
        self._up: dict[str, str | None] = {}
        for r in config.table.routes:
            if r.escalate_to:
                self._up[r.name] = r.escalate_to
                continue
            higher = [x for x in self.names if self.rank[x] > self.rank[r.name]]
            nxt = min((self.rank[x] for x in higher), default=None)
            self._up[r.name] = next((x for x in higher if self.rank[x] == nxt), None)

    @property
    def tiered(self) -> bool:
        return bool(self.order)

    def up(self, route: str) -> str | None:
        """The route one step up from `route`, or None at the top."""
        return self._up.get(route)

    def tier(self, route: str) -> str:
        return self.order[self.rank[route]] if self.order else ""

    def surface(self, request: Request) -> tuple[str, Surface]:
        name = str(request.metadata.get("surface") or "")
        return name, self.surfaces.get(name, NO_SURFACE)

    def floor_rank(self, surface: Surface) -> int:
        if not surface.floor:
            return self.base
        if surface.floor in self.order:
            return self.order.index(surface.floor)
        return self.rank.get(surface.floor, self.base)

    def threshold(self, surface: Surface) -> float:
        """Below this confidence a model's decision escalates on this surface."""
        if surface.min_confidence is not None:
            return surface.min_confidence
        if surface.prefer == "latency":
            return 0.0
        if surface.prefer == "quality" and self.min_confidence:
            return (self.min_confidence + 1) / 2
        return self.min_confidence

    def at_or_above(self, rank: int, among: tuple[str, ...] | None = None) -> tuple[str, ...]:
        return tuple(r for r in (among or self.names) if self.rank[r] >= rank)

    def raise_to(self, route: str, rank: int, allowed: tuple[str, ...] | None = None) -> str:
        """`route`, stepped up until it reaches `rank` (through allowed routes where it can)."""
        seen = {route}
        current = route
        while self.rank[current] < rank:
            nxt = self.up(current)
            if nxt is None or nxt in seen:
                break
            seen.add(nxt)
            current = nxt
        if self.rank[current] < rank or (allowed and current not in allowed):
            candidates = [r for r in (allowed or self.names) if self.rank[r] >= rank]
            if candidates:  # the cheapest qualifying route
                current = min(candidates, key=lambda r: (self.rank[r], self.names.index(r)))
        return current
