"""The kinds of provider and decider llmrouter knows, as data: one entry each.

A route table names a provider kind in `[targets.NAME] provider = "..."` and, optionally, a
decider in `[router] decider = "..."`. Each entry points at its implementation ("module:name",
imported only when used), so this module imports nothing of llmrouter and any layer may read it.

- A new provider: a module in llmrouter/providers/ with a class taking (target, client) that
  satisfies providers.base.Provider, and one entry in PROVIDERS.
- A new decider: a module in llmrouter/deciders/ with a `build(config) -> Decider` function, and
  one entry in DECIDERS.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ProviderKind:
    """How to reach one kind of target."""

    impl: str  # "module:Class", built with (target, http_client)
    remote: bool = True  # speaks HTTP: needs a base_url and shares the chain's client; else in-process
    # continues a trailing assistant message (an assistant prefill) instead of answering it anew;
    # the default for its targets' `prefill`
    prefill: bool = False


@dataclass(frozen=True)
class DeciderKind:
    """How to build one kind of decider."""

    impl: str  # "module:function", called with the Config


PROVIDERS: dict[str, ProviderKind] = {
    "openai": ProviderKind("llmrouter.providers.openai:OpenAIProvider"),
    "anthropic": ProviderKind("llmrouter.providers.anthropic:AnthropicProvider", prefill=True),
    "local": ProviderKind("llmrouter.providers.local:LocalProvider", remote=False),
}

DECIDERS: dict[str, DeciderKind] = {
    "llama": DeciderKind("llmrouter.deciders.llama:build"),
    "remote": DeciderKind("llmrouter.deciders.remote:build"),
}


def load(impl: str) -> Any:
    """The object an entry's `impl` names ("package.module:attribute.path")."""
    module, _, attr = impl.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj
