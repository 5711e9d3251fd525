"""The Decider protocol: text in, a raw verdict out (the router validates it against the table)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from llmrouter.types import Timings


@dataclass(frozen=True)
class Verdict:
    """What a decider says before validation: `route` may still be anything."""

    route: str
    scores: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    truncated: bool = False
    request_tokens: int = 0
    timings: Timings = field(default_factory=Timings)
    decider: str = ""


class Decider(Protocol):
    """Anything that can pick a route for a request's text."""

    name: str

    def decide(self, text: str, *, explain: bool = False) -> Verdict: ...
