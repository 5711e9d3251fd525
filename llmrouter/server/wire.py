"""What crosses the server's wire: request bodies and headers in; JSON answers, SSE chunks and
OpenAI-style errors out. Bad input becomes an HTTPError with a 4xx here, never a 500."""

from __future__ import annotations

import json
import math
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse

from llmrouter.completion import CompletionStream
from llmrouter.router import ROUTER_MODEL
from llmrouter.errors import ContextTooLong, LLMRouterError, PolicyRejected, ProviderError, ProviderTimeout, RequestError
from llmrouter.fallback import safe_log, summarize_attempts
from llmrouter.types import Attempt, Completion, Decision, _first_error

MAX_BODY_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64  # JSON nesting a chat body may have (OpenAI's own bodies need a handful of levels)
# Keys that would let a request choose where or how llmrouter connects: refused, not ignored,
# so a client that expected them to work learns at once that they do not.
REFUSED_KEYS = ("base_url", "api_base", "api_key", "endpoint", "url", "headers", "extra_headers", "organization")
HEADER_METADATA = ("surface", "tier", "session", "key", "pin", "language")  # x-llmrouter-<name>


class ChatBody(BaseModel):
    """The parts of a chat completion body llmrouter checks; other OpenAI fields pass through."""

    model_config = ConfigDict(extra="allow", strict=True)
    model: str = ROUTER_MODEL
    messages: list[Any]
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=1)
    stop: str | list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    stream_options: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("tools")
    @classmethod
    def _tools_are_functions(cls, tools: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for i, tool in enumerate(tools or []):
            fn = tool.get("function")
            if fn is not None and not (isinstance(fn, dict) and isinstance(fn.get("name", ""), str)):
                raise ValueError(f"tools[{i}].function must be an object with a string `name`")
        return tools

    def params(self) -> dict[str, Any]:
        """The chat parameters for the targets (FORWARDED filters them again)."""
        params = self.model_dump(exclude={"model", "messages", "stream", "metadata", "n"}, exclude_none=True)
        params.update(self.model_extra or {})
        return params


class HTTPError(Exception):
    """An error response in OpenAI's shape."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.headers = status, message, kind, code, dict(headers or {})

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "param": None, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)

    def event(self) -> bytes:
        body = {"error": {"message": self.message, "type": self.kind, "code": self.code}}
        return b"data: " + json.dumps(body).encode() + b"\n\n"


def http_error(exc: Exception) -> HTTPError:
    """The HTTP error a client sees for an exception."""
    if isinstance(exc, HTTPError):
        return exc
    if not isinstance(exc, LLMRouterError):
        return HTTPError(500, "internal error in llmrouter; see the server log", "server_error", "internal_error")
    msg = exc.message
    if isinstance(exc, PolicyRejected):  # a cap: 429 with Retry-After (queue) or 403 (reject)
        headers = {"retry-after": str(math.ceil(exc.retry_after))} if exc.retry_after else {}
        kind = "rate_limit_error" if exc.status == 429 else "permission_error"
        return HTTPError(exc.status or 429, msg, kind, exc.code, headers)
    if isinstance(exc, RequestError):
        return HTTPError(exc.status or 400, msg, code="model_not_found" if exc.status == 404 else "invalid_request")
    if isinstance(exc, ContextTooLong):
        return HTTPError(400, msg, code="context_length_exceeded")
    if isinstance(exc, ProviderError) and exc.status in (400, 422):
        return HTTPError(400, msg, code="rejected_by_target")
    if isinstance(exc, ProviderTimeout):
        return HTTPError(504, msg, "timeout", "deadline_exceeded")
    if isinstance(exc, ProviderError):
        headers = {"retry-after": str(math.ceil(exc.retry_after))} if exc.retry_after else {}
        return HTTPError(503, msg, "service_unavailable", "all_targets_failed", headers)
    return HTTPError(500, msg, "server_error", "router_error")


async def read_body(request: HTTPRequest, max_body_bytes: int) -> ChatBody:
    """The request's chat body, checked: size, UTF-8, JSON, refused keys, valid Unicode, types."""
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > max_body_bytes:
        raise HTTPError(413, f"request body is larger than {max_body_bytes} bytes", code="body_too_large")
    raw = bytearray()
    async for part in request.stream():
        raw += part
        if len(raw) > max_body_bytes:
            raise HTTPError(413, f"request body is larger than {max_body_bytes} bytes", code="body_too_large")
    try:
        data = json.loads(bytes(raw), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise HTTPError(400, "request body is not UTF-8", code="invalid_json") from None
    except ValueError as exc:
        raise HTTPError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:  # deeper than Python's parser goes
        raise HTTPError(400, f"request body is nested more than {MAX_DEPTH} levels deep", code="invalid_json") from None
    if _deeper_than(data, MAX_DEPTH):
        raise HTTPError(400, f"request body is nested more than {MAX_DEPTH} levels deep", code="invalid_json")
    if not isinstance(data, dict):
        raise HTTPError(400, "request body must be a JSON object", code="invalid_json")
    refused = [k for k in REFUSED_KEYS if k in data]
    if refused:
        raise HTTPError(400, f"{', '.join(refused)} cannot be set in a request: llmrouter only calls the "
                        "targets in its config, with the keys in its environment", code="unsupported_parameter")
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise HTTPError(400, f"request contains a lone surrogate ({exc.object[exc.start:exc.end]!a}): "
                        "send valid Unicode text", code="invalid_encoding") from None
    try:
        return ChatBody.model_validate(data)
    except ValidationError as exc:
        raise HTTPError(400, _first_error(exc), code="invalid_request") from None


def _deeper_than(data: Any, limit: int) -> bool:
    """Whether JSON `data` nests objects or arrays more than `limit` levels (no recursion)."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return False


def frames_of(exc: BaseException, last: int = 8) -> list[str]:
    """The innermost frames of an exception's traceback as "file:line function": where it failed,
    never what it said (an exception's message may quote the request)."""
    return [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in traceback.extract_tb(exc.__traceback__)][-last:]


def _no_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON does not, and no target would either.
    raise ValueError(f"{name} is not valid JSON")


def http_metadata(headers: Any, metadata: dict[str, Any] | None, tools: list[Any] | None) -> dict[str, Any]:
    """A request's routing metadata from its body's `metadata` and `x-llmrouter-*` headers (the
    headers win: a gateway sets them, a client sets the body), plus the names of requested tools."""
    meta = {k: v for k, v in (metadata or {}).items() if k != "tenant"}  # the server's to set (an API key's)
    for name in HEADER_METADATA:
        value = headers.get(f"x-llmrouter-{name}")
        if value:
            meta[name] = value
    if tools:
        meta["tools"] = [_tool_name(t) for t in tools]
    return meta


def _tool_name(tool: Any) -> str:
    fn = tool.get("function") if isinstance(tool, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else (tool.get("name") if isinstance(tool, dict) else None)
    return name if isinstance(name, str) else ""


def deadline(request: HTTPRequest, cap: float) -> float:
    """The request's deadline: x-llmrouter-deadline (seconds), never above the server's."""
    raw = request.headers.get("x-llmrouter-deadline")
    if raw is None:
        return cap
    try:
        value = float(raw)
    except ValueError:
        raise HTTPError(400, "x-llmrouter-deadline must be a number of seconds", code="invalid_header") from None
    if not (value > 0 and math.isfinite(value)):
        raise HTTPError(400, "x-llmrouter-deadline must be a positive number of seconds", code="invalid_header")
    return min(value, cap)


def meta_headers(decision: Decision | None, target: str, attempts: list[Attempt] | tuple[Attempt, ...]) -> dict[str, str]:
    """The x-llmrouter-* response headers: route, source, decider (which stage), confidence,
    target, attempts, hedged, fallbacks."""
    h = {"x-llmrouter-target": target,
         "x-llmrouter-attempts": str(sum(1 for a in attempts if a.outcome != "skipped"))}
    if decision is not None:
        h["x-llmrouter-route"] = decision.route
        h["x-llmrouter-source"] = decision.source
        if decision.decider:
            h["x-llmrouter-decider"] = decision.decider
        if decision.escalated_from:
            h["x-llmrouter-escalated-from"] = decision.escalated_from
        if decision.confidence is not None:
            h["x-llmrouter-confidence"] = f"{decision.confidence:.4f}"
    else:
        h["x-llmrouter-source"] = "bypass"
    hedges = [a for a in attempts if a.hedge]
    if hedges:  # a second attempt raced a slow first one: did it answer?
        h["x-llmrouter-hedged"] = "won" if any(a.outcome == "ok" for a in hedges) else "lost"
    fallbacks = summarize_attempts(attempts)
    if fallbacks:
        h["x-llmrouter-fallbacks"] = fallbacks
    return {k: _header(v) for k, v in h.items()}


def _header(value: Any) -> str:
    # Header values must be printable ASCII; reasons quote providers, so clean and bound them.
    text = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in str(value))
    return text[:512]


def new_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def completion_json(done: Completion, response_id: str) -> dict[str, Any]:
    """A chat.completion body for an answer."""
    content = done.text if (done.text or not done.tool_calls) else None  # OpenAI: null beside tool calls
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if done.tool_calls:
        message["tool_calls"] = list(done.tool_calls)
    u = done.usage
    return {
        "id": response_id, "object": "chat.completion", "created": int(time.time()),
        "model": done.model,
        "choices": [{"index": 0, "message": message, "finish_reason": done.finish_reason or "stop"}],
        "usage": {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                  "total_tokens": u.total_tokens},
        "llmrouter": {"route": done.route, "target": done.target,
                      "attempts": [a.model_dump(exclude_defaults=True) for a in done.attempts]},
    }


async def sse(stream: CompletionStream, response_id: str, include_usage: bool,
              on_end: Callable[[str], None]) -> AsyncIterator[bytes]:
    """The SSE body: chunks as they come, then [DONE]; an error event (no [DONE]) if the target
    fails after the answer started, so a client never takes a truncated answer for a whole one.
    `on_end` hears how it ended: "ok", "cut" (the target failed mid-answer) or "error"."""
    base = {"id": response_id, "object": "chat.completion.chunk", "created": int(time.time()), "model": stream.model}
    sent_role = False
    outcome = "ok"
    try:
        async for chunk in stream:
            if not chunk.delta and not chunk.finish_reason:
                continue  # usage-only or empty chunks: usage is sent once, at the end
            delta = dict(chunk.delta)
            if not sent_role:
                delta = {"role": "assistant", **delta}
                sent_role = True
            data = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": chunk.finish_reason}]}
            if chunk.finish_reason and stream.continued_by:  # its headers went out before the cut
                data["llmrouter"] = {"continued_by": stream.continued_by[-1]}
            yield b"data: " + json.dumps(data).encode() + b"\n\n"
        if include_usage and stream.completion is not None:
            u = stream.completion.usage
            usage = {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                     "total_tokens": u.total_tokens}
            yield b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"
    except ProviderError as exc:
        outcome = "cut"
        yield HTTPError(502, exc.message, "provider_error", "stream_interrupted").event()
    except Exception as exc:  # a bug of ours: the client must still learn the answer is incomplete
        outcome = "error"
        safe_log("error", "stream_error", error_type=type(exc).__name__, frames=frames_of(exc))
        yield http_error(exc).event()
    finally:
        await stream.aclose()
        on_end(outcome)
