"""Continuing a stream cut mid-answer on another target: the prefill body, and the answer's parts
as they are delivered (text, tool calls and usage per target), so that the client sees one answer.

The partial answer goes out as a trailing assistant message with its trailing whitespace
removed (Anthropic refuses a prefill that ends in whitespace; models continue a word boundary
better without it). When the client already has that whitespace, the continuation's leading
whitespace is dropped, so the joined text reads as one.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from llmrouter.providers import StreamChunk
from llmrouter.types import Segment, Usage

CHARS_PER_TOKEN = 4  # for a cut target's share, which it never reported


def with_prefill(body: dict[str, Any], sent: str) -> dict[str, Any]:
    """`body` asking for the rest of an answer of which `sent` was already delivered."""
    messages = list(body.get("messages") or [])
    last = messages[-1] if messages else None
    if isinstance(last, dict) and last.get("role") == "assistant" and isinstance(last.get("content"), str):
        messages[-1] = {**last, "content": (last["content"] + sent).rstrip()}  # the client's own prefill
    else:
        messages.append({"role": "assistant", "content": sent.rstrip()})
    return {**body, "messages": messages}


@dataclass
class Part:
    """What one target delivered of the answer."""

    target: str
    body: dict[str, Any]
    texts: list[str] = field(default_factory=list)
    usage: dict[str, int] | None = None

    def segment(self) -> Segment:
        if self.usage:
            return Segment(target=self.target, usage=Usage(**self.usage))
        prompt = len(json.dumps(self.body.get("messages") or [])) // CHARS_PER_TOKEN
        completion = math.ceil(len("".join(self.texts)) / CHARS_PER_TOKEN)
        return Segment(target=self.target, usage=Usage(prompt_tokens=prompt, completion_tokens=completion),
                       estimated=True)


class Parts:
    """The parts of one streamed answer, in order; `deliver` fits each chunk onto what was sent."""

    def __init__(self) -> None:
        self._parts: list[Part] = []
        self._trim = False  # drop the continuation's leading whitespace: the client has some already
        self.has_tool_calls = False

    def begin(self, target: str, body: dict[str, Any]) -> None:
        self._trim = self.text()[-1:].isspace()
        self._parts.append(Part(target, body))

    def text(self) -> str:
        return "".join(t for p in self._parts for t in p.texts)

    def deliver(self, chunk: StreamChunk) -> StreamChunk | None:
        """The chunk as the client gets it; None when a continuation's chunk carries nothing new."""
        part = self._parts[-1]
        part.usage = chunk.usage or part.usage
        if chunk.delta.get("tool_calls"):
            self.has_tool_calls = True
        if len(self._parts) > 1:
            chunk = self._continued(chunk)
        part.texts.append(chunk.delta.get("content") or "")
        empty = not chunk.delta and chunk.finish_reason is None and chunk.usage is None
        return None if empty and len(self._parts) > 1 else chunk

    def _continued(self, chunk: StreamChunk) -> StreamChunk:
        delta = {k: v for k, v in chunk.delta.items() if k != "role"}  # the client has its role already
        content = delta.pop("content", None)
        if self._trim and content:
            content = content.lstrip()
            self._trim = not content
        if content:
            delta["content"] = content
        return StreamChunk(delta=delta, finish_reason=chunk.finish_reason, usage=chunk.usage)

    def segments(self) -> list[Segment]:
        return [p.segment() for p in self._parts]
