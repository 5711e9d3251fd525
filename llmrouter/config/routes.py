"""Routes and the route table: the destinations the router model may choose, described for it."""

from __future__ import annotations

import enum
import hashlib
import json
from functools import cached_property

from pydantic import Field, field_validator, model_validator

from llmrouter.config.base import Strict

ROUTE_NAME = r"^[a-z][a-z0-9_\-]{0,39}$"


class Route(Strict):
    """A destination the router can choose, described for the router model."""

    name: str = Field(pattern=ROUTE_NAME)
    description: str = Field(min_length=1)
    examples: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    tier: str = ""  # its cost tier ([tiers] order): surfaces' floors and escalation move along tiers
    escalate_to: str = ""  # the route one tier up (default: the first route of the next tier)

    @field_validator("description")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("description is blank")
        return v.strip()


class RouteTable(Strict):
    """The routes and the default route; `names` is the enum the router may answer with."""

    routes: tuple[Route, ...]
    default_route: str

    @model_validator(mode="after")
    def _consistent(self) -> RouteTable:
        if not self.routes:
            raise ValueError("the route table is empty: add at least one [[routes]] entry")
        seen: set[str] = set()
        for r in self.routes:
            if r.name in seen:
                raise ValueError(f"duplicate route name {r.name!r}")
            seen.add(r.name)
        if self.default_route not in seen:
            raise ValueError(
                f"default_route {self.default_route!r} is not in the table "
                f"(routes: {', '.join(sorted(seen))})"
            )
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.routes)

    def __getitem__(self, name: str) -> Route:
        for r in self.routes:
            if r.name == name:
                return r
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def targets_of(self, route: str) -> tuple[str, ...]:
        """A route's targets in order; a route without targets borrows the default route's."""
        return self[route].targets or self[self.default_route].targets

    @cached_property
    def fingerprint(self) -> str:
        # tiers steer the policy after the model, not the model: they stay out of the cache key
        data = self.model_dump(mode="json", exclude={"routes": {"__all__": {"tier", "escalate_to"}}})
        blob = json.dumps(data, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @cached_property
    def route_enum(self) -> type[enum.Enum]:
        """An Enum of the route names: Outlines' output type and the validator of decisions."""
        return enum.Enum("RouteName", {n: n for n in self.names}, type=str)  # type: ignore[return-value]
