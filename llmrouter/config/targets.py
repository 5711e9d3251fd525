"""Targets: the models llmrouter can send a request to, what they cost and how hard to try them."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from llmrouter.config.base import Strict
from llmrouter.registry import PROVIDERS


class Target(Strict):
    """A model llmrouter can send a request to."""

    name: str = ""
    provider: str = "openai"  # a kind in llmrouter.registry.PROVIDERS
    model: str
    base_url: str = ""
    api_key_env: str = ""
    timeout_s: float = Field(60.0, gt=0)
    # no first content token (streamed) or response headers (not) within this: the next target;
    # a silent target is not retried on itself. Unset: [fallback] first_token_timeout_s
    first_token_timeout_s: float | None = Field(None, gt=0)
    # hedging (non-streamed requests): no answer from this target within this, a second attempt
    # goes to the next target and the first answer wins. Unset: [fallback] hedge_after_ms
    hedge_after_ms: float | None = Field(None, gt=0)
    # continues a trailing assistant message, so a stream cut on another target can finish here.
    # Unset: the provider kind's default (anthropic: yes; openai-compatible and local: no)
    prefill: bool | None = None
    max_retries: int | None = Field(None, ge=0)  # retries on this target; unset: [fallback] max_retries
    context_window: int = Field(8192, ge=256)
    vision: bool = False
    input_price: float = Field(0.0, ge=0, description="USD per million input tokens")
    output_price: float = Field(0.0, ge=0, description="USD per million output tokens")
    latency_ms: float = Field(0.0, ge=0, description="typical time to answer, for break-even math")

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, v: str) -> str:
        if v not in PROVIDERS:
            raise ValueError(f"unknown provider {v!r} (known: {', '.join(sorted(PROVIDERS))})")
        return v

    @model_validator(mode="after")
    def _url_for_remote(self) -> Target:
        if PROVIDERS[self.provider].remote and not self.base_url:
            raise ValueError(f"target {self.name!r}: provider {self.provider!r} needs base_url")
        return self

    @property
    def accepts_prefill(self) -> bool:
        """May a stream cut elsewhere be continued here (the partial answer sent as an assistant prefill)?"""
        return PROVIDERS[self.provider].prefill if self.prefill is None else self.prefill

    def cost_usd(self, prompt_tokens: float, completion_tokens: float) -> float:
        """What an answer costs on this target, from its prices (USD per million tokens)."""
        return (prompt_tokens * self.input_price + completion_tokens * self.output_price) / 1e6
