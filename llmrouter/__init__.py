"""llmrouter: pick the model for each LLM request with a small local LLM as the router.

    from llmrouter import Router
    router = Router.from_config("routes.toml")     # None: the packaged default table
    router.decide("...")                           # a Decision
    router.complete("...")                         # a Completion, through the route's targets

Importing llmrouter is cheap: the Router (and llama.cpp with it) loads when first asked for.
"""

from typing import TYPE_CHECKING, Any

from llmrouter.config import Config, FallbackPolicy, Route, RouteTable, RouterSettings, Target
from llmrouter.errors import (
    ChecksumError,
    ConfigError,
    DeciderError,
    LLMRouterError,
    ModelError,
    PolicyRejected,
    ProviderError,
    RequestError,
)
from llmrouter.types import Attempt, Completion, Decision, Message, Request, Usage, Verdict

if TYPE_CHECKING:
    from llmrouter.router import Router

__all__ = [
    "Attempt",
    "ChecksumError",
    "Completion",
    "Config",
    "ConfigError",
    "DeciderError",
    "Decision",
    "FallbackPolicy",
    "LLMRouterError",
    "Message",
    "ModelError",
    "PolicyRejected",
    "ProviderError",
    "Request",
    "RequestError",
    "Route",
    "RouteTable",
    "Router",
    "RouterSettings",
    "Target",
    "Usage",
    "Verdict",
]


def __getattr__(name: str) -> Any:  # Router pulls in llama.cpp: import it only when asked for
    if name == "Router":
        from llmrouter.router import Router

        return Router
    raise AttributeError(f"module 'llmrouter' has no attribute {name!r}")
