"""The data that crosses llmrouter's boundaries: requests in, decisions and completions out.

    Request (Messages + metadata) -> Verdict (a decider's raw answer) -> Decision
    Decision -> Attempts at targets -> Completion (text, Usage)

All models are frozen, so a Decision that left the router cannot be edited on its way to a
provider, a cache or a log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmrouter.errors import RequestError

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
Source = Literal["model", "cheap", "cache", "default", "rule"]


def _check_text(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"text is not valid Unicode (lone surrogate at position {exc.start}); "
            "send UTF-8 text"
        ) from None
    return text


class ContentPart(BaseModel):
    """One part of a message's content: text, an image, or anything else (kept as sent)."""

    model_config = ConfigDict(frozen=True, extra="allow")
    type: str
    text: str | None = None

    _text_ok = field_validator("text")(lambda cls, v: v if v is None else _check_text(v))


class Message(BaseModel):
    """An OpenAI-style chat message. Unknown fields (tool calls, names...) are kept unchanged."""

    model_config = ConfigDict(frozen=True, extra="allow")
    role: Role
    content: str | list[ContentPart] | None = None

    @field_validator("content")
    @classmethod
    def _content_ok(cls, v: Any) -> Any:
        return _check_text(v) if isinstance(v, str) else v

    @property
    def text(self) -> str:
        """The message's text, with the text parts of a multi-part content joined by newlines."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text for p in self.content if p.type == "text" and p.text)

    @property
    def has_image(self) -> bool:
        return isinstance(self.content, list) and any(
            p.type in ("image_url", "image", "input_image") for p in self.content
        )


class Request(BaseModel):
    """What the router reads: chat messages plus routing metadata (surface, tier, session...)."""

    model_config = ConfigDict(frozen=True)
    messages: tuple[Message, ...]
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("messages")
    @classmethod
    def _has_user_text(cls, v: tuple[Message, ...]) -> tuple[Message, ...]:
        if not v:
            raise ValueError("messages is empty")
        if not any(m.role == "user" and (m.text.strip() or m.has_image) for m in v):
            raise ValueError("no user message with text or an image")
        return v

    @classmethod
    def of(cls, value: Any, **metadata: Any) -> Request:
        """Build a Request from text, bytes (UTF-8), a list of messages, or a dict with 'messages'.

        Raises RequestError with a readable message for anything else.
        """
        if isinstance(value, Request):
            if not metadata:
                return value
            return value.model_copy(update={"metadata": {**value.metadata, **metadata}})
        if isinstance(value, (bytes, bytearray)):
            try:
                value = bytes(value).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RequestError(
                    f"request bytes are not UTF-8 (bad byte at offset {exc.start})"
                ) from None
        if isinstance(value, str):
            value = [{"role": "user", "content": value}]
        elif isinstance(value, dict) and "messages" in value:
            metadata = {**(value.get("metadata") or {}), **metadata}
            value = value["messages"]
        if not isinstance(value, (list, tuple)):
            raise RequestError(
                f"cannot route a {type(value).__name__}: pass text, messages, or a Request"
            )
        try:
            return cls(messages=tuple(value), metadata=metadata)
        except ValidationError as exc:
            raise RequestError(_first_error(exc)) from None

    @property
    def text(self) -> str:
        """The text the router decides on: the last user message with text."""
        for m in reversed(self.messages):
            if m.role == "user" and m.text.strip():
                return m.text
        return ""

    @property
    def has_image(self) -> bool:
        return any(m.has_image for m in self.messages)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()))
    msg = str(err.get("msg", "invalid request")).removeprefix("Value error, ")
    return f"invalid request: {where}: {msg}" if where else f"invalid request: {msg}"


class Timings(BaseModel):
    """Milliseconds spent in each stage of one decision."""

    model_config = ConfigDict(frozen=True)
    tokenize_ms: float = 0.0
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    total_ms: float = 0.0


class Decision(BaseModel):
    """Where a request goes and why.

    `confidence` is the probability the router gives `route` among the allowed routes (None when
    no model was asked); `scores` holds that distribution; `source` says who decided.
    """

    model_config = ConfigDict(frozen=True)
    route: str
    source: Source
    confidence: float | None = None
    scores: dict[str, float] = Field(default_factory=dict)
    reason: str | None = None
    truncated: bool = False
    request_tokens: int = 0
    prompt_version: str = ""
    model: str = ""
    decider: str = ""
    timings: Timings = Field(default_factory=Timings)
    rule: str | None = None  # the rule that picked or narrowed the route
    escalated_from: str | None = None  # the route before a floor or escalation moved it up
    policy: tuple[str, ...] = ()  # what the policy did, in order ("floor:checkout", "cap:escalation"...)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class Verdict:
    """What a decider says before validation: `route` may still be anything."""

    route: str
    scores: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    truncated: bool = False
    request_tokens: int = 0
    timings: Timings = field(default_factory=Timings)
    decider: str = ""


class Attempt(BaseModel):
    """What happened to one target for one request: answered, failed (and why), or skipped (why)."""

    model_config = ConfigDict(frozen=True)
    target: str
    outcome: Literal["ok", "failed", "skipped", "cancelled"]  # cancelled: a hedge race lost
    reason: str = ""
    status: int | None = None
    retry: int = 0
    waited_s: float = 0.0
    elapsed_ms: float = 0.0
    hedge: bool = False  # sent as a hedge: a second attempt racing a slow first one
    continuation: bool = False  # continues a stream cut on another target


class Usage(BaseModel):
    model_config = ConfigDict(frozen=True)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Segment(BaseModel):
    """One target's share of an answer that was continued on another target after a cut."""

    model_config = ConfigDict(frozen=True)
    target: str
    usage: Usage = Field(default_factory=Usage)
    estimated: bool = False  # the target was cut before it reported usage: counted from the text


class Completion(BaseModel):
    """An answer and how it was reached: the route, the target that answered, every attempt."""

    model_config = ConfigDict(frozen=True)
    text: str
    target: str
    model: str
    route: str | None = None
    decision: Decision | None = None
    attempts: tuple[Attempt, ...] = ()
    usage: Usage = Field(default_factory=Usage)
    finish_reason: str | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()
    latency_ms: float = 0.0
    cost_usd: float = 0.0  # from the answering target's prices (each segment's, when continued)
    segments: tuple[Segment, ...] = ()  # when a cut stream was continued: every target's share, in order

    @property
    def continued_by(self) -> str | None:
        """The target that finished a stream cut on another one, or None."""
        return self.segments[-1].target if self.segments else None
