"""Router prompt templates: load from prompts/, render around the request, version by content hash.

A template renders turns (`<<system>>`, `<<user>>`, `<<assistant>>` lines); the model family's chat
template wraps them. The request is the last thing in the last user turn, so the rendered prompt
splits into a constant `prefix` (kept in the KV cache) and a short `suffix` after the request.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import jinja2

from llmrouter.config import RouteTable
from llmrouter.errors import ConfigError
from llmrouter.paths import resource_path

SENTINEL = "\x00LLMROUTER_REQUEST\x00"
EXAMPLE_CHARS = 300
TRUNCATION_MARKER = " [...] "


@dataclass(frozen=True)
class ChatFamily:
    """How one model family marks turns; `end` closes a turn and ends an answer."""

    turn_start: str
    end: str
    assistant: str

    def wrap(self, role: str, content: str) -> str:
        return self.turn_start.format(role=role) + content + self.end


CHAT_FAMILIES = {
    "chatml": ChatFamily("<|im_start|>{role}\n", "<|im_end|>", "<|im_start|>assistant\n"),
    "llama3": ChatFamily(
        "<|start_header_id|>{role}<|end_header_id|>\n\n",
        "<|eot_id|>",
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    ),
    "gemma": ChatFamily("<start_of_turn>{role}\n", "<end_of_turn>", "<start_of_turn>model\n"),
}


@dataclass(frozen=True)
class RenderedPrompt:
    """The prompt around the request: `prefix + request + suffix`, and what ends an answer."""

    prefix: str
    suffix: str
    end_of_answer: str


class RouterPrompt:
    """A router prompt template; `version` is the hash of its text."""

    def __init__(self, text: str, name: str = "inline") -> None:
        self.text = text
        self.name = name
        self.version = hashlib.sha256(text.encode()).hexdigest()[:12]
        try:
            self._template = jinja2.Environment(
                undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
            ).from_string(text)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(f"prompt {name}: template error line {exc.lineno}: {exc.message}") from None

    @classmethod
    def load(cls, name_or_path: str) -> RouterPrompt:
        """A template by name (from prompts/) or by path to a .j2 file."""
        if name_or_path.endswith(".j2") or os.sep in name_or_path:
            path = Path(os.path.expanduser(name_or_path))
        else:
            path = resource_path("prompts") / f"{name_or_path}.j2"
        try:
            return cls(path.read_text("utf-8"), name=path.stem)
        except FileNotFoundError:
            known = ", ".join(sorted(p.stem for p in resource_path("prompts").glob("*.j2")))
            raise ConfigError(
                f"no router prompt {name_or_path!r}", hint=f"use one of: {known}, or a path to a .j2 file"
            ) from None

    def render(
        self, table: RouteTable, *, examples_per_route: int = 2, family: str = "chatml"
    ) -> RenderedPrompt:
        """Render for a route table; the request goes between `prefix` and `suffix`."""
        if family not in CHAT_FAMILIES:
            raise ConfigError(f"unknown chat template family {family!r}; known: {', '.join(CHAT_FAMILIES)}")
        chat = CHAT_FAMILIES[family]
        turns = self.turns(table, examples_per_route=examples_per_route)
        whole = "".join(chat.wrap(role, body) + "\n" for role, body in turns) + chat.assistant
        prefix, suffix = whole.split(SENTINEL)
        return RenderedPrompt(prefix=prefix, suffix=suffix, end_of_answer=chat.end)

    def turns(self, table: RouteTable, *, examples_per_route: int = 2) -> list[tuple[str, str]]:
        """The (role, text) turns, the request marked by SENTINEL at the end of the last one.

        For engines that apply their own chat template (the remote decider)."""
        try:
            text = self._template.render(
                routes=table.routes,
                examples=pick_examples(table, examples_per_route),
                request=SENTINEL,
            )
        except jinja2.TemplateError as exc:
            raise ConfigError(f"prompt {self.name}: {exc}") from None
        turns = parse_turns(text)
        if not turns or turns[-1][0] != "user" or not turns[-1][1].endswith(SENTINEL):
            raise ConfigError(
                f"prompt {self.name}: {{{{ request }}}} must end the last <<user>> turn"
            )
        return turns


_TURN = re.compile(r"^<<(system|user|assistant)>>[ \t]*\n", re.MULTILINE)


def parse_turns(text: str) -> list[tuple[str, str]]:
    """Split rendered template text into (role, body) turns; text before the first marker is dropped."""
    parts = _TURN.split(text)
    return [(parts[i], parts[i + 1].strip("\n")) for i in range(1, len(parts) - 1, 2)]


def pick_examples(table: RouteTable, per_route: int) -> list[dict[str, str]]:
    """Up to `per_route` examples of each route, interleaved route by route (no route last in a block)."""
    out = []
    for i in range(per_route):
        for r in table.routes:
            if i < len(r.examples):
                text = " ".join(r.examples[i].split())[:EXAMPLE_CHARS]
                out.append({"text": text, "route": r.name})
    return out


def precap_text(text: str, max_chars: int) -> tuple[str, bool]:
    """Cut a huge text to its head and tail before tokenizing it (cheap, deterministic)."""
    if len(text) <= max_chars:
        return text, False
    head = max_chars * 2 // 3
    return text[:head] + TRUNCATION_MARKER + text[len(text) - (max_chars - head):], True


def truncate_tokens(
    tokens: Sequence[int], budget: int, marker: Sequence[int]
) -> tuple[list[int], bool]:
    """Keep at most `budget` tokens: two thirds from the head, the rest from the tail, joined by
    `marker`. Deterministic; never longer than `budget`."""
    if len(tokens) <= budget:
        return list(tokens), False
    room = max(budget - len(marker), 0)
    if room == 0:
        return list(tokens[:budget]), True
    head = (room * 2 + 2) // 3
    tail = room - head
    return list(tokens[:head]) + list(marker) + (list(tokens[-tail:]) if tail else []), True
