"""Anthropic's Messages API as a target: OpenAI-style chat in, OpenAI-style answer and chunks out.

Translated both ways: system messages, text and image parts, tool calls and tool results,
stop reasons and usage. `base_url` is the API root, e.g. https://api.anthropic.com.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

from llmrouter.config import Target
from llmrouter.errors import ProviderError
from llmrouter.providers.base import (
    ProviderResponse,
    StreamChunk,
    api_key,
    iter_sse,
    map_errors,
    parse_json,
    raise_for_status,
    send_within,
)

VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens; OpenAI clients often leave it out
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls"}
# Anthropic's retryable error types, for errors that arrive inside a 200 stream.
RETRYABLE_TYPES = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}


class AnthropicProvider:
    """POSTs to `{base_url}/v1/messages` with x-api-key from the target's api_key_env."""

    def __init__(self, target: Target, client: httpx.AsyncClient) -> None:
        self.target = target
        self._client = client
        base = target.base_url.rstrip("/")
        self._url = base + ("/messages" if base.endswith("/v1") else "/v1/messages")

    def _request(self, body: dict[str, Any], stream: bool) -> httpx.Request:
        headers = {"anthropic-version": VERSION, "accept": "text/event-stream" if stream else "application/json"}
        key = api_key(self.target)
        if key:
            headers["x-api-key"] = key
        payload = to_anthropic(body, self.target.model)
        if stream:
            payload["stream"] = True
        return self._client.build_request("POST", self._url, json=payload, headers=headers)

    async def complete(self, body: dict[str, Any]) -> ProviderResponse:
        with map_errors(self.target):
            response = await send_within(self._client, self._request(body, stream=False), self.target)
        await raise_for_status(response, self.target)
        data = parse_json(response.text, self.target, "response")
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            raise ProviderError(f"{self.target.name}: response has no content", target=self.target.name)
        return from_anthropic(data, self.target.model)

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
        with map_errors(self.target):
            response = await self._client.send(self._request(body, stream=True), stream=True)
        try:
            await raise_for_status(response, self.target)
            tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool_calls index
            usage: dict[str, int] = {}
            with map_errors(self.target):
                async for event, data in iter_sse(response):
                    msg = parse_json(data, self.target)
                    kind = event or (str(msg.get("type") or "") if isinstance(msg, dict) else "")
                    if not isinstance(msg, dict):
                        raise ProviderError(f"{self.target.name}: malformed stream event", target=self.target.name)
                    if kind == "message_stop":
                        return
                    if kind == "error":
                        err = msg.get("error") or {}
                        raise ProviderError(
                            f"{self.target.name}: stream error: {err.get('message') or err.get('type')}",
                            retryable=err.get("type") in RETRYABLE_TYPES,
                            target=self.target.name,
                        )
                    chunk = _stream_event(kind, msg, tool_index, usage)
                    if chunk is not None:
                        yield chunk
            raise ProviderError(f"{self.target.name}: stream ended before message_stop",
                                retryable=True, target=self.target.name)
        finally:
            await response.aclose()


def _stream_event(kind: str, msg: dict[str, Any], tool_index: dict[int, int],
                  usage: dict[str, int]) -> StreamChunk | None:
    if kind == "message_start":
        u = (msg.get("message") or {}).get("usage") or {}
        usage["prompt_tokens"] = int(u.get("input_tokens") or 0)
        return StreamChunk(delta={"role": "assistant"})
    if kind == "content_block_start":
        block = msg.get("content_block") or {}
        if block.get("type") == "tool_use":
            i = tool_index[msg.get("index", 0)] = len(tool_index)
            call = {"index": i, "id": block.get("id"), "type": "function",
                    "function": {"name": block.get("name"), "arguments": ""}}
            return StreamChunk(delta={"tool_calls": [call]})
        return None
    if kind == "content_block_delta":
        delta = msg.get("delta") or {}
        if delta.get("type") == "text_delta":
            return StreamChunk(delta={"content": delta.get("text", "")})
        if delta.get("type") == "input_json_delta" and msg.get("index", 0) in tool_index:
            call = {"index": tool_index[msg.get("index", 0)], "function": {"arguments": delta.get("partial_json", "")}}
            return StreamChunk(delta={"tool_calls": [call]})
        return None
    if kind == "message_delta":
        u = msg.get("usage") or {}
        usage["completion_tokens"] = int(u.get("output_tokens") or 0)
        reason = str((msg.get("delta") or {}).get("stop_reason") or "stop")
        return StreamChunk(finish_reason=STOP_REASONS.get(reason, reason), usage=dict(usage))
    return None  # ping, content_block_stop, and event types added later


def to_anthropic(body: dict[str, Any], model: str) -> dict[str, Any]:
    """An Anthropic Messages request for an OpenAI-style chat body."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for m in body.get("messages", []):
        role = m.get("role")
        if role in ("system", "developer"):
            system.append(_text_of(m.get("content")))
            continue
        if role in ("tool", "function"):
            block = {"type": "tool_result", "tool_use_id": m.get("tool_call_id", ""),
                     "content": _text_of(m.get("content"))}
            _append(turns, "user", [block])
            continue
        blocks = _blocks(m.get("content"))
        for call in m.get("tool_calls") or []:
            if not isinstance(call, dict):
                continue
            fn = call.get("function") or {}
            try:
                args = json.loads(fn.get("arguments") or "{}")
            except ValueError:
                args = {"arguments": fn.get("arguments")}
            blocks.append({"type": "tool_use", "id": call.get("id", ""), "name": fn.get("name", ""), "input": args})
        _append(turns, "assistant" if role == "assistant" else "user", blocks)
    out: dict[str, Any] = {
        "model": model,
        "messages": turns,
        "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS,
    }
    if system:
        out["system"] = "\n\n".join(s for s in system if s)
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    functions: list[dict[str, Any]] = [t["function"] for t in body.get("tools") or ()
                                       if isinstance(t, dict) and isinstance(t.get("function"), dict)
                                       and t["function"].get("name")]
    if functions:
        out["tools"] = [
            {"name": f["name"], "description": f.get("description", ""),
             "input_schema": f.get("parameters") or {"type": "object", "properties": {}}}
            for f in functions
        ]
        choice = _tool_choice(body.get("tool_choice"))
        if choice:
            out["tool_choice"] = choice
    return out


def from_anthropic(data: dict[str, Any], model: str) -> ProviderResponse:
    """A ProviderResponse for an Anthropic Messages answer."""
    text, calls = [], []
    for block in data.get("content") or []:
        if block.get("type") == "text":
            text.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"), "arguments": json.dumps(block.get("input", {}))}})
    u = data.get("usage") or {}
    reason = data.get("stop_reason")
    return ProviderResponse(
        text="".join(text),
        finish_reason=STOP_REASONS.get(reason, reason) if isinstance(reason, str) else None,
        tool_calls=tuple(calls),
        usage={"prompt_tokens": int(u.get("input_tokens") or 0), "completion_tokens": int(u.get("output_tokens") or 0)},
        model=str(data.get("model") or model),
    )


def _append(turns: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    # Anthropic wants user/assistant turns to alternate: merge consecutive ones of the same role.
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"].extend(blocks)
    else:
        turns.append({"role": role, "content": list(blocks)})


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content or ""


def _blocks(content: Any) -> list[dict[str, Any]]:
    if content is None or content == "":
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks = []
    for part in content:
        kind = part.get("type")
        if kind == "text":
            blocks.append({"type": "text", "text": part.get("text", "")})
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url", "")
            blocks.append({"type": "image", "source": _image_source(url)})
    return blocks


def _image_source(url: str) -> dict[str, Any]:
    if url.startswith("data:") and ";base64," in url:
        head, data = url[5:].split(";base64,", 1)
        return {"type": "base64", "media_type": head or "image/png", "data": data}
    return {"type": "url", "url": url}


def _tool_choice(choice: Any) -> dict[str, Any] | None:
    if choice in (None, "auto"):
        return {"type": "auto"} if choice else None
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        return {"type": "tool", "name": choice["function"]["name"]}
    return None
