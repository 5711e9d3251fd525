"""The exceptions llmrouter raises, all in one tree.

    LLMRouterError                  anything llmrouter raises on purpose
    ├── ConfigError                 a route table or setting is wrong; the message says what to fix
    ├── RequestError                a request that cannot be routed (empty, wrong shape, not UTF-8)
    │   └── PolicyRejected          a guardrail refused it (escalation or spend cap); may say when to retry
    ├── ModelError                  the router model is missing, unreadable or fails to load
    │   └── ChecksumError           a downloaded or local file does not match the manifest's sha256
    ├── DeciderError                the decider could not produce a decision (the router then falls
    │                               back to the default route; callers of Router.decide never see it)
    └── ProviderError               a target failed; `retryable` says whether another try may succeed
        ├── ProviderTimeout         an attempt or the request's total deadline ran out
        ├── ContextTooLong          the request does not fit the target's context window
        └── AllTargetsFailed        every target of a route failed or was skipped

Every error carries a `hint`: the next thing the user can do about it.
"""

from __future__ import annotations


class LLMRouterError(Exception):
    """Base class: `hint` says what to do next."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class ConfigError(LLMRouterError):
    hint = "run `llmrouter routes check FILE` to see every problem in a route table"


class RequestError(LLMRouterError):
    hint = "send plain text or OpenAI-style messages with at least one non-empty user message"


class PolicyRejected(RequestError):
    """A cap refused the request. `status` is the HTTP status to answer with (429 or 403),
    `code` names the cap, `retry_after` (seconds) says when room is expected."""

    hint = "try again later, or ask the operator to raise the cap"

    def __init__(self, message: str, *, code: str, status: int = 429, retry_after: float | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code, self.status, self.retry_after = code, status, retry_after


class ModelError(LLMRouterError):
    hint = "run `llmrouter models list` and `llmrouter models pull NAME`"


class ChecksumError(ModelError):
    hint = "the file was removed; pull it again, or fix the sha256 in the manifest if you changed the model"


class DeciderError(LLMRouterError):
    """The decider failed; the router turns this into a default-route decision."""


class ProviderError(LLMRouterError):
    """A target failed. `retryable` is True for connect errors, timeouts, 408, 429 and 5xx."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        status: int | None = None,
        target: str | None = None,
        retry_after: float | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.retryable = retryable
        self.status = status
        self.target = target
        self.retry_after = retry_after


class ProviderTimeout(ProviderError):
    def __init__(self, message: str, **kw: object) -> None:
        kw.setdefault("retryable", True)
        super().__init__(message, **kw)  # type: ignore[arg-type]


class ContextTooLong(ProviderError):
    """The request does not fit the target's context window; only a larger target may take it."""

    hint = "send a shorter request, or add a target with a larger context_window to the route"


class AllTargetsFailed(ProviderError):
    hint = "check the targets' URLs and API keys (`llmrouter routes check`), or add a fallback target"
