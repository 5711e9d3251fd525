"""Any OpenAI-compatible endpoint as a target: OpenAI, vLLM, llama.cpp server, Ollama's /v1,
OpenRouter, Groq... The body goes out as the client sent it, with the target's model name."""

from __future__ import annotations

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


class OpenAIProvider:
    """POSTs to `{base_url}/chat/completions`, bearer key from the target's api_key_env."""

    def __init__(self, target: Target, client: httpx.AsyncClient) -> None:
        self.target = target
        self._client = client
        self._url = target.base_url.rstrip("/") + "/chat/completions"

    def _request(self, body: dict[str, Any], stream: bool) -> httpx.Request:
        headers = {"accept": "text/event-stream" if stream else "application/json"}
        key = api_key(self.target)
        if key:
            headers["authorization"] = f"Bearer {key}"
        payload = {**body, "model": self.target.model, "stream": stream}
        if not stream:
            payload.pop("stream_options", None)  # OpenAI refuses stream_options on a non-streamed call
        else:  # usage is what spend, budgets and token rates are charged on: always ask for it
            payload["stream_options"] = {**(payload.get("stream_options") or {}), "include_usage": True}
        return self._client.build_request("POST", self._url, json=payload, headers=headers)

    async def complete(self, body: dict[str, Any]) -> ProviderResponse:
        with map_errors(self.target):
            response = await send_within(self._client, self._request(body, stream=False), self.target)
        await raise_for_status(response, self.target)
        data = parse_json(response.text, self.target, "response")
        try:
            choice = data["choices"][0]
            message = choice.get("message") or {}
        except (KeyError, IndexError, TypeError):
            raise ProviderError(f"{self.target.name}: response has no choices", target=self.target.name) from None
        return ProviderResponse(
            text=message.get("content") or "",
            finish_reason=choice.get("finish_reason"),
            tool_calls=tuple(message.get("tool_calls") or ()),
            usage=_usage(data.get("usage")),
            model=str(data.get("model") or self.target.model),
        )

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
        with map_errors(self.target):
            response = await self._client.send(self._request(body, stream=True), stream=True)
        try:
            await raise_for_status(response, self.target)
            finished = False
            with map_errors(self.target):
                async for _event, data in iter_sse(response):
                    if data.strip() == "[DONE]":
                        return
                    chunk = parse_json(data, self.target)
                    if isinstance(chunk, dict) and chunk.get("error"):
                        err = chunk["error"]
                        msg = err.get("message") if isinstance(err, dict) else err
                        raise ProviderError(f"{self.target.name}: stream error: {msg}", target=self.target.name)
                    out = _chunk(chunk, self.target)
                    finished = finished or out.finish_reason is not None
                    yield out
            if not finished:
                # The body ended cleanly but without [DONE] or a finish_reason: a truncated answer.
                raise ProviderError(f"{self.target.name}: stream ended before the answer was complete",
                                    retryable=True, target=self.target.name)
        finally:
            await response.aclose()


def _chunk(data: Any, target: Target) -> StreamChunk:
    if not isinstance(data, dict):
        raise ProviderError(f"{target.name}: malformed stream chunk", target=target.name)
    choices = data.get("choices") or []
    usage = _usage(data.get("usage")) or None
    if not choices:  # e.g. the usage-only chunk of stream_options.include_usage
        return StreamChunk(usage=usage)
    choice = choices[0]
    if not isinstance(choice, dict):
        raise ProviderError(f"{target.name}: malformed stream chunk", target=target.name)
    return StreamChunk(delta=dict(choice.get("delta") or {}), finish_reason=choice.get("finish_reason"), usage=usage)


def _usage(raw: Any) -> dict[str, int]:
    if not isinstance(raw, dict):
        return {}
    out = {k: int(raw[k]) for k in ("prompt_tokens", "completion_tokens") if isinstance(raw.get(k), int)}
    return out
