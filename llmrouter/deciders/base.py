"""The Decider protocol: a request's text in, a raw Verdict out (the router validates it)."""

from __future__ import annotations

from typing import Protocol

from llmrouter.config import Config
from llmrouter.prompts import RouterPrompt
from llmrouter.registry import DECIDERS, load
from llmrouter.types import Verdict


class Decider(Protocol):
    """Anything that can pick a route for a request's text.

    `decide` may raise DeciderError; whatever it returns is validated against the table, so a
    bad answer becomes the default route. Optional attributes the router reads when present:
    `model_id` (what decides: part of every cache key, default "custom"), `cache_salt`
    (anything else that changes the answers, such as a fitted head's digest), `cheap_stage` (a
    tuned head/cheap.CheapStage to decide first from the text alone) and
    `decide_batch(texts) -> list[Verdict]` (several requests in one pass; the pool uses it for
    requests that waited together)."""

    name: str

    def decide(self, text: str, *, explain: bool = False) -> Verdict: ...


def build_decider(config: Config, prompt: RouterPrompt) -> Decider:
    """The decider the route table asks for ([router] decider), from the registry of kinds."""
    factory = load(DECIDERS[config.router.decider_kind].impl)
    decider: Decider = factory(config, prompt)
    return decider
