"""Stand-ins for tests (yours and ours): emulated fleets, and a router whose decisions need no model."""

from __future__ import annotations

from typing import Any

from llmrouter.config import Config, FallbackPolicy
from llmrouter.router import Router
from llmrouter.testing.emulator import Emulator
from llmrouter.types import Decision, Request, Verdict


def fleet(emu: Emulator, routes: dict[str, list[str]], **overrides: dict[str, Any]) -> Config:
    """A Config whose targets are emulated: names starting with 'claude' speak Anthropic,
    'vision' ones accept images, everything else is OpenAI-compatible."""
    names = {t for ts in routes.values() for t in ts} | set(overrides)
    targets: dict[str, dict[str, Any]] = {}
    for n in sorted(names):
        api = "anthropic" if n.startswith("claude") else "openai"
        targets[n] = {"provider": api, "model": f"{n}-model", "base_url": emu.base_url(n, api),
                      "vision": n.startswith("vision"), **overrides.get(n, {})}
    return Config.from_dict({
        "router": {"default_route": next(iter(routes)), "cache": False},
        "targets": targets,
        "routes": [{"name": r, "description": f"requests for {r}", "targets": ts} for r, ts in routes.items()],
    })


class FixedDecider:
    """A decider that always answers `route` (the table's default route unless given)."""

    name = "fixed"
    model_id = "fixed"

    def __init__(self, route: str) -> None:
        self.route = route

    def decide(self, text: str, *, explain: bool = False) -> Verdict:
        return Verdict(route=self.route, scores={self.route: 1.0}, decider=self.name)


class FakeRouter(Router):
    """A real Router where the route does not matter: it picks `metadata["route"]` or the default
    route (source "rule", no model), and counts its decisions. Answering is the real thing."""

    def __init__(self, config: Config, fallback: FallbackPolicy | None = None) -> None:
        super().__init__(config, decider=FixedDecider(config.table.default_route), cache=None, fallback=fallback)
        self.decisions = 0

    def decide(self, request: Any, *, explain: bool = False, use_cache: bool = True) -> Decision:
        req = Request.of(request)
        self.decisions += 1
        route = req.metadata.get("route") or self.config.table.default_route
        return Decision(route=route, source="rule", confidence=1.0, reason="test router")

    async def adecide(self, request: Request, allowed: tuple[str, ...] | None = None) -> Decision:
        return self.decide(request)
