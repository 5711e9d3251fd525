"""What every provider gives llmrouter: one answer or a stream of OpenAI-style chunks, and errors
that say whether another try may succeed.

A provider is a thin adapter: it turns an OpenAI-style chat body into its own wire format and its
answer back into a `ProviderResponse` or `StreamChunk`s. It never retries and never times itself
out: the FallbackChain is the one retry layer and owns every deadline. Errors from httpx and
from HTTP statuses become `ProviderError`s here, in `map_errors` and `raise_for_status`, and
nowhere else.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from llmrouter.config import Target
from llmrouter.errors import ContextTooLong, ProviderError, ProviderTimeout

# Statuses where the same target may answer if asked again (the spec's list, and Anthropic's 529).
RETRYABLE_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))

# Phrases providers use for "the prompt does not fit" (OpenAI, Anthropic, vLLM, llama.cpp server).
_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "prompt is too long",
    "too many tokens",
    "exceeds the context",
    "context window",
)


@dataclass(frozen=True)
class StreamChunk:
    """One piece of a streamed answer, as an OpenAI `delta` (content, tool_calls, role...)."""

    delta: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: dict[str, int] | None = None

    @property
    def has_content(self) -> bool:
        """True once this chunk carries part of the answer (text or a tool call), not just a role."""
        return bool(self.delta.get("content") or self.delta.get("tool_calls"))


@dataclass(frozen=True)
class ProviderResponse:
    """A whole answer from one target."""

    text: str
    finish_reason: str | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()
    usage: dict[str, int] = field(default_factory=dict)
    model: str = ""


class Provider(Protocol):
    """Calls one target. `body` is an OpenAI-style chat completion body without `model`."""

    target: Target

    async def complete(self, body: dict[str, Any]) -> ProviderResponse: ...

    def stream(self, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
        """Chunks of the answer. Ends normally only after the provider said the answer is whole;
        a stream cut short raises ProviderError. Close the iterator to free the connection."""
        ...


def api_key(target: Target) -> str | None:
    """The target's key from the environment variable the config names (never from a request)."""
    if not target.api_key_env:
        return None
    key = os.environ.get(target.api_key_env, "").strip()
    if not key:
        raise ProviderError(
            f"target {target.name!r}: environment variable {target.api_key_env} is not set",
            target=target.name,
            status=401,
            hint=f"export {target.api_key_env}=... before starting llmrouter",
        )
    return key


def redact(text: str, target: Target) -> str:
    """`text` with the target's key removed, so an echoing provider cannot leak it into an error."""
    key = os.environ.get(target.api_key_env, "").strip() if target.api_key_env else ""
    if len(key) >= 4:
        text = text.replace(key, "[redacted]")
    return text


@contextmanager
def map_errors(target: Target) -> Iterator[None]:
    """Turn httpx's exceptions raised inside the block into ProviderErrors for `target`."""
    name = target.name
    try:
        yield
    except ProviderError:
        raise
    except httpx.ConnectTimeout:
        raise ProviderError(f"{name}: connect timed out", retryable=True, target=name) from None
    except httpx.ConnectError as exc:
        raise ProviderError(f"{name}: cannot connect ({_reason(exc)})", retryable=True, target=name) from None
    except httpx.TimeoutException as exc:
        raise ProviderTimeout(f"{name}: timed out ({type(exc).__name__})", target=name) from None
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        # The connection broke (reset, closed mid-body): the provider gave no usable answer.
        raise ProviderError(f"{name}: connection broken ({_reason(exc)})", retryable=True, target=name) from None
    except httpx.HTTPError as exc:
        raise ProviderError(f"{name}: {type(exc).__name__}: {_reason(exc)}", target=name) from None


def _reason(exc: Exception) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


async def raise_for_status(response: httpx.Response, target: Target) -> None:
    """Raise the ProviderError a non-2xx response means; reads the (small) error body."""
    if response.status_code < 400:
        return
    with map_errors(target):
        raw = await response.aread()
    raise error_from_status(response.status_code, raw, response.headers, target)


def error_from_status(status: int, raw: bytes, headers: httpx.Headers, target: Target) -> ProviderError:
    """The ProviderError for an HTTP error status; the message quotes the provider, never a key."""
    message = _error_message(raw) or httpx.codes.get_reason_phrase(status) or "error"
    message = redact(message, target)[:500]
    text = f"{target.name}: HTTP {status}: {message}"
    lowered = (message + raw[:2000].decode("utf-8", "replace")).lower()
    if status in (400, 413, 422) and any(m in lowered for m in _CONTEXT_MARKERS):
        return ContextTooLong(text, status=status, target=target.name)
    return ProviderError(
        text,
        retryable=status in RETRYABLE_STATUS,
        status=status,
        target=target.name,
        retry_after=parse_retry_after(headers.get("retry-after")),
    )


def _error_message(raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return raw[:300].decode("utf-8", "replace").strip()
    err = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(err, dict):
        return str(err.get("message") or err.get("type") or "")[:500]
    return str(err)[:500]


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


async def iter_sse(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) pairs of a server-sent-events body; `event` is "" when the server sent none."""
    event, data = "", list[str]()
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "", []
        elif line.startswith(":"):
            continue  # a comment / keep-alive
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
    if data:
        yield event, "\n".join(data)


def parse_json(data: str, target: Target, what: str = "stream chunk") -> Any:
    """JSON from a provider, or a ProviderError naming the target when it is malformed."""
    try:
        return json.loads(data)
    except ValueError:
        raise ProviderError(f"{target.name}: malformed {what}: {data[:80]!r}", target=target.name) from None


def make_client(max_connections: int = 1000) -> httpx.AsyncClient:
    """The HTTP client providers share: no retries, no total timeout (the FallbackChain owns both)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(None, connect=10.0),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=200),
        follow_redirects=False,  # a redirect must not carry a key to another host
    )


async def send_within(client: httpx.AsyncClient, request: httpx.Request, target: Target) -> httpx.Response:
    """Send `request` and read the whole response; with the target's first_token_timeout_s, its
    headers must arrive within that (ProviderTimeout: the chain moves to the next target)."""
    limit = target.first_token_timeout_s
    if limit is None:
        return await client.send(request)
    try:
        async with asyncio.timeout(limit):
            response = await client.send(request, stream=True)
    except TimeoutError:
        raise ProviderTimeout(f"{target.name}: no response within {limit:.2f}s", target=target.name) from None
    try:
        await response.aread()
    finally:
        await response.aclose()
    return response
