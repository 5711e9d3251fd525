"""The exceptions llmrouter raises, all in one tree.

    LLMRouterError                  anything llmrouter raises on purpose
    ├── ConfigError                 a route table or setting is wrong; the message says what to fix
    ├── RequestError                a request that cannot be routed (empty, wrong shape, not UTF-8)
    │   ├── UnknownModel            a request's `model` is neither the router nor a target
    │   └── PolicyRejected          a guardrail refused it (escalation or spend cap); may say when to retry
    ├── ModelError                  the router model is missing, unreadable or fails to load
    │   └── ChecksumError           a downloaded or local file does not match the manifest's sha256
    ├── MissingExtra                an optional dependency (eval, tune, bench) is not installed
    ├── DeciderError                the decider could not produce a decision (the router then falls
    │                               back to the default route; callers of Router.decide never see it)
    └── ProviderError               a target failed; `retryable` says whether another try may succeed
        ├── ProviderTimeout         an attempt or the request's total deadline ran out
        ├── ContextTooLong          the request does not fit the target's context window
        └── AllTargetsFailed        every target of a route failed or was skipped

Every error keeps its `message` and a `hint` (the next thing the user can do) apart; `str()` joins
them for a terminal. `status` is the HTTP status a client of the server gets for it.
"""

from __future__ import annotations


class LLMRouterError(Exception):
    """Base class: `message` says what went wrong, `hint` what to do next."""

    hint: str = ""
    status: int | None = 500  # ProviderError: the target's own status instead (None: it sent none)

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if hint is not None:
            self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(LLMRouterError):
    hint = "run `llmrouter routes check FILE` to see every problem in a route table"


class RequestError(LLMRouterError):
    hint = "send plain text or OpenAI-style messages with at least one non-empty user message"
    status = 400


class UnknownModel(RequestError):
    """The `model` of a request is neither the router nor a configured target."""

    hint = "use model='router', or one of the names GET /v1/models lists"
    status = 404


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


class MissingExtra(LLMRouterError):
    """An optional dependency is missing; the hint names the extra that brings it."""


class DeciderError(LLMRouterError):
    """The decider failed; the router turns this into a default-route decision."""


class ProviderError(LLMRouterError):
    """A target failed. `retryable` is True for connect errors, timeouts, 408, 429 and 5xx;
    `status` is the target's HTTP status when it sent one."""

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


def need(module: str, extra: str, purpose: str) -> None:
    """Raise MissingExtra unless `module` can be imported (an optional dependency)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingExtra(f"{purpose} needs {module}, which is not installed",
                           hint=f"pip install 'llmrouter[{extra}]'")
