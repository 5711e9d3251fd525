"""Providers: how llmrouter calls a target. Each kind is an entry in llmrouter.registry.PROVIDERS.

    base.py       the Provider protocol, StreamChunk / ProviderResponse, and the one place httpx
                  errors and HTTP statuses become ProviderErrors
    openai.py     any OpenAI-compatible endpoint
    anthropic.py  Anthropic Messages
    local.py      a GGUF answered in-process by llama.cpp
"""

from __future__ import annotations

import httpx

from llmrouter.config import Target
from llmrouter.providers.base import Provider, ProviderResponse, StreamChunk
from llmrouter.registry import PROVIDERS, load

__all__ = ["Provider", "ProviderResponse", "StreamChunk", "provider_for", "shares_client"]


def shares_client(target: Target) -> bool:
    """Whether the target speaks HTTP (its adapter shares the chain's client, one per event loop)
    or runs in-process (one adapter for the target's lifetime)."""
    return PROVIDERS[target.provider].remote


def provider_for(target: Target, client: httpx.AsyncClient | None) -> Provider:
    """The adapter for `target.provider`, from the registry; remote ones share `client`."""
    adapter: Provider = load(PROVIDERS[target.provider].impl)(target, client)
    return adapter
