"""llmrouter: pick the model for each LLM request with a small local LLM as the router."""

from llmrouter.config import Config, Route, RouteTable, RouterSettings, Target
from llmrouter.errors import (
    ChecksumError,
    ConfigError,
    DeciderError,
    LLMRouterError,
    ModelError,
    ProviderError,
    RequestError,
)
from llmrouter.types import Decision, Message, Request

__all__ = [
    "ChecksumError",
    "Config",
    "ConfigError",
    "DeciderError",
    "Decision",
    "LLMRouterError",
    "Message",
    "ModelError",
    "ProviderError",
    "Request",
    "Route",
    "RouteTable",
    "RouterSettings",
    "Router",
    "Target",
]


def __getattr__(name: str):  # Router pulls in llama.cpp: import it only when asked for
    if name == "Router":
        from llmrouter.router import Router

        return Router
    raise AttributeError(name)
