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
    `model_id` (what decides: part of every cache key, default "custom") and `cache_salt`
    (anything else that changes the answers, such as a fitted head's digest)."""

    name: str

    def decide(self, text: str, *, explain: bool = False) -> Verdict: ...


def build_decider(config: Config, prompt: RouterPrompt) -> Decider:
    """The decider the route table asks for ([router] decider), from the registry of kinds."""
    factory = load(DECIDERS[config.router.decider_kind].impl)
    decider: Decider = factory(config, prompt)
    return decider
