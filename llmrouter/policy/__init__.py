"""Routing policy: deterministic rules before the model, guardrails after it."""

from llmrouter.policy.base import Policy, PreDecision, restrict

__all__ = ["Policy", "PreDecision", "restrict"]
