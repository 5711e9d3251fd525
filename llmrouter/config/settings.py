"""`[router]` (how the router model runs and decides) and `[fallback]` (how hard a request is tried)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator

from llmrouter.config.base import Strict
from llmrouter.errors import ConfigError
from llmrouter.paths import PACKAGE_DIR, user_dir
from llmrouter.registry import DECIDERS

DEFAULT_CONFIG = PACKAGE_DIR / "default_routes.toml"


class RemoteDeciderSettings(Strict):
    """Decide on a serving engine instead of in-process (llama.cpp server, vLLM, Ollama...)."""

    base_url: str = Field(min_length=1, description="an OpenAI-compatible /v1 URL")
    model: str = Field(min_length=1)
    api_key_env: str = ""
    timeout_s: float = Field(5.0, gt=0)
    logprobs: bool = True  # ask for top logprobs at the route token: the decision's confidence


class RouterSettings(Strict):
    """How the local router model runs."""

    model: str = "smollm2-135m"
    prompt: str = "router-v1"
    decider: str = ""  # a kind in llmrouter.registry.DECIDERS; unset: "remote" with [router.remote], else "llama"
    # scored: the model's route probabilities; generate: Outlines JSON; fitted: a head over the
    # model's hidden states (`head`, made by `llmrouter tune`); combined: the head, or the model's
    # calibrated scores where the head is unsure
    mode: Literal["scored", "generate", "fitted", "combined"] = "scored"
    head: str = ""  # a fitted head (.npz) made by `llmrouter tune`, relative to the route table
    # decisions read the request's content view: without what it claims about its own difficulty
    # or route, instructions to the router, and chat-template markup (head/claims.py); `tune`
    # still fits on requests as written
    content_view: bool = False
    threads: int = Field(1, ge=1, le=256)
    threads_batch: int | None = Field(None, ge=1, le=256)
    context_size: int = Field(2048, ge=256, le=131072)
    batch_size: int = Field(512, ge=8, le=8192)
    gpu_layers: int = Field(0, ge=-1)
    # deciders working side by side, each with its own context (and `threads`): more than one
    # only pays where there are cores for them all
    workers: int = Field(1, ge=1, le=64)
    # the cheap stage (a tuned head's, see head/cheap.py) decides first where it is sure; false:
    # only when the model is busy past decide_wait_s
    cascade: bool = True
    # requests waiting for the model decided in one pass. 0: 8 with GPU offload, else 1 (on a
    # CPU a batched pass costs more per request than one at a time: bench/results/batch_decisions.md)
    max_batch: int = Field(0, ge=0, le=64)
    max_request_tokens: int = Field(256, ge=16, le=32768)
    examples_per_route: int = Field(2, ge=0, le=50)
    cache: bool = True
    cache_dir: str = ""
    cache_size_mb: int = Field(256, ge=1)
    remote: RemoteDeciderSettings | None = None  # [router.remote]: decide on a serving engine

    @field_validator("decider")
    @classmethod
    def _known_decider(cls, v: str) -> str:
        if v and v not in DECIDERS:
            raise ValueError(f"unknown decider {v!r} (known: {', '.join(sorted(DECIDERS))})")
        return v

    @property
    def batch_limit(self) -> int:
        """The most requests one pass decides (max_batch, or its default for this hardware)."""
        return self.max_batch or (8 if self.gpu_layers != 0 else 1)

    @property
    def decider_kind(self) -> str:
        """The decider this table uses."""
        return self.decider or ("remote" if self.remote is not None else "llama")

    def decider_settings(self) -> dict[str, Any]:
        """The settings that change a decision (part of every cache key)."""
        return {
            "mode": self.mode,
            "max_request_tokens": self.max_request_tokens,
            "examples_per_route": self.examples_per_route,
            "head": self.head,
            "content_view": self.content_view,
        }

    def head_path(self, config_path: str = "") -> Path | None:
        """The fitted head's file: relative to the route table's folder (or the package's)."""
        if not self.head:
            return None
        p = Path(os.path.expanduser(self.head))
        if p.is_absolute():
            return p
        base = Path(config_path).parent if config_path else DEFAULT_CONFIG.parent
        if not (base / p).is_file() and (DEFAULT_CONFIG.parent / p).is_file():
            return DEFAULT_CONFIG.parent / p  # a copy of the packaged table keeps the packaged head
        return base / p

    @property
    def cache_path(self) -> Path:
        return Path(os.path.expanduser(self.cache_dir)) if self.cache_dir else user_dir("decisions")


class FallbackPolicy(Strict):
    """`[fallback]`: how hard llmrouter tries before it gives up on a request."""

    deadline_s: float = Field(60.0, gt=0)  # the whole request: retries and fallbacks included
    max_retries: int = Field(2, ge=0)  # per target, per request; a target's own `max_retries` wins
    backoff_base_s: float = Field(0.2, ge=0)
    backoff_cap_s: float = Field(2.0, ge=0)
    retry_after_cap_s: float = Field(10.0, ge=0)  # a longer Retry-After moves on to the next target
    stream_idle_timeout_s: float = Field(30.0, gt=0)
    first_token_timeout_s: float | None = Field(None, gt=0)  # per target unless the target sets its own
    # A stream cut after content was sent continues on the next target that accepts an assistant
    # prefill (the partial answer sent as one), so the client gets one whole answer.
    continue_streams: bool = True
    # Hedging, non-streamed requests only (opt-in): no answer within this, a second attempt goes to
    # the next target; the first answer wins, the other is cancelled. A target's own value wins.
    hedge_after_ms: float | None = Field(None, gt=0)
    hedge_budget: float = Field(0.1, ge=0, le=1)  # at most this share of requests is hedged
    # Try targets with a bad recent error rate or latency (decaying averages) after the healthy
    # ones, before their breaker would open (opt-in).
    health_ordering: bool = False
    breaker_failures: int = Field(5, ge=1)  # failures in a row that open a target's breaker
    breaker_cooldown_s: float = Field(30.0, gt=0)
    # Under a burst, a request that waits longer than this for the router model takes the cheap
    # stage's decision instead (None: always wait for the model; `llmrouter serve` then uses 5 s).
    decide_wait_s: float | None = Field(None, ge=0)

    def with_overrides(self, **overrides: Any) -> FallbackPolicy:
        """A copy with the `overrides` that are not None (validated)."""
        values = {**self.model_dump(), **{k: v for k, v in overrides.items() if v is not None}}
        try:
            return FallbackPolicy(**values)
        except ValidationError as exc:
            raise ConfigError(f"invalid fallback setting: {exc.errors()[0]['msg']}") from None


class AuthSettings(Strict):
    """`[auth]`: the server's API keys (`llmrouter keys create --file PATH`)."""

    keys_file: str = Field(min_length=1)  # relative to the route table's folder, or absolute

    def keys_path(self, config_path: str = "") -> Path:
        p = Path(os.path.expanduser(self.keys_file))
        return p if p.is_absolute() or not config_path else Path(config_path).parent / p
