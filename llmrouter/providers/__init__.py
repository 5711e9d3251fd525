"""Providers: how llmrouter calls a target (OpenAI-compatible, Anthropic, or a local GGUF model)."""

from __future__ import annotations

import httpx

from llmrouter.config import Target
from llmrouter.providers.base import ContextTooLong, Provider, ProviderResponse, StreamChunk

__all__ = ["ContextTooLong", "Provider", "ProviderResponse", "StreamChunk", "provider_for"]


def provider_for(target: Target, client: httpx.AsyncClient) -> Provider:
    """The adapter for `target.provider`; remote ones share `client`."""
    if target.provider == "anthropic":
        from llmrouter.providers.anthropic import AnthropicProvider

        return AnthropicProvider(target, client)
    if target.provider == "local":
        from llmrouter.providers.local import LocalProvider

        return LocalProvider(target)
    from llmrouter.providers.openai import OpenAIProvider

    return OpenAIProvider(target, client)
