"""Rules before the model: cheap, deterministic, and each decision names the rule that made it.

    guards (always on)  an image goes only to routes with a vision target; a long context only to
                        routes with a target whose context window fits it
    [[rules]] in order  `allow` / `deny` narrow the routes and go on to the next rule; the first
                        `route` (or `use_pin`) rule whose route is still allowed decides; `pass`
                        stops here and leaves the choice to the model
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from llmrouter.config.policy import Rule, When

if TYPE_CHECKING:
    from llmrouter.config import Config
    from llmrouter.types import Request

CHARS_PER_TOKEN = 3.5  # a conservative estimate (English is ~4): a context check must not let a long text through
_CODE = re.compile(
    r"```|^\s*(def|class|import|from \S+ import|#include|public static|func|fn|package)\b|"
    r"\b(function\s*\w*\s*\(|console\.log|System\.out|printf\(|SELECT\s.+\sFROM|=>|::|->)|"
    r"[;{}]\s*$|^\s*(if|for|while)\s*\(.*\)\s*\{",
    re.MULTILINE | re.IGNORECASE,
)
_STOPWORDS = {
    "en": {"the", "and", "is", "of", "to", "what", "how", "you", "this", "with", "for", "in", "a"},
    "fr": {"le", "la", "les", "et", "est", "des", "une", "pour", "que", "dans", "avec", "vous", "je"},
    "de": {"der", "die", "das", "und", "ist", "nicht", "ein", "eine", "mit", "für", "ich", "wie", "sie"},
    "es": {"el", "la", "los", "las", "y", "es", "que", "una", "para", "con", "por", "cómo", "qué"},
    "pt": {"o", "os", "as", "e", "é", "que", "uma", "para", "com", "não", "como", "você", "do"},
    "it": {"il", "lo", "gli", "e", "è", "che", "una", "per", "con", "non", "come", "sono", "della"},
}
_SCRIPTS = (  # (code, first, last) Unicode ranges, checked before the Latin stopwords
    ("ja", 0x3040, 0x30FF), ("ko", 0xAC00, 0xD7AF), ("zh", 0x4E00, 0x9FFF), ("ru", 0x0400, 0x04FF),
    ("ar", 0x0600, 0x06FF), ("he", 0x0590, 0x05FF), ("el", 0x0370, 0x03FF), ("hi", 0x0900, 0x097F),
    ("th", 0x0E00, 0x0E7F),
)


@dataclass(frozen=True)
class Features:
    """What rules can see of a request, computed once and only when a rule asks."""

    request: Request

    @cached_property
    def text(self) -> str:
        return self.request.text

    @cached_property
    def chars(self) -> int:
        return len(self.text)

    @cached_property
    def context_tokens(self) -> int:
        """An estimate of the whole conversation's tokens (every message), for the context check."""
        return int(sum(len(m.text) for m in self.request.messages) / CHARS_PER_TOKEN) + 8 * len(self.request.messages)

    @cached_property
    def has_code(self) -> bool:
        return bool(_CODE.search(self.text))

    @cached_property
    def language(self) -> str:
        given = self.request.metadata.get("language")
        return str(given).lower() if given else detect_language(self.text)

    @property
    def meta(self) -> dict[str, Any]:
        return self.request.metadata


def detect_language(text: str) -> str:
    """A rough ISO code: by script for non-Latin text, by stopwords among a few Latin languages;
    "und" when there is too little to tell."""
    counts: dict[str, int] = {}
    letters = 0
    for ch in text[:2000]:
        if not ch.isalpha():
            continue
        letters += 1
        o = ord(ch)
        for code, lo, hi in _SCRIPTS:
            if lo <= o <= hi:
                counts[code] = counts.get(code, 0) + 1
                break
    if letters and counts:
        code, n = max(counts.items(), key=lambda kv: kv[1])
        if n / letters > 0.3:
            if code == "zh" and counts.get("ja"):
                return "ja"  # Japanese mixes kanji with kana
            return code
    words = re.findall(r"[^\W\d_]+", text[:2000].lower())
    if len(words) < 3:
        return "und"
    hits = {lang: sum(w in stop for w in words) for lang, stop in _STOPWORDS.items()}
    lang, n = max(hits.items(), key=lambda kv: kv[1])
    return lang if n else "und"


def matches(when: When, f: Features) -> bool:
    """Whether every condition of `when` holds for the request."""
    meta = f.meta
    if when.min_chars is not None and f.chars < when.min_chars:
        return False
    if when.max_chars is not None and f.chars > when.max_chars:
        return False
    if when.has_code is not None and f.has_code != when.has_code:
        return False
    if when.has_image is not None and f.request.has_image != when.has_image:
        return False
    if when.tools is not None and bool(meta.get("tools")) != when.tools:
        return False
    if when.language and f.language not in when.language:
        return False
    if when.user_tier and str(meta.get("tier", "")) not in when.user_tier:
        return False
    if when.surface and str(meta.get("surface", "")) not in when.surface:
        return False
    if when.pin and str(meta.get("pin", "")) not in when.pin:
        return False
    if when.keywords and not _keyword_re(when.keywords).search(f.text):
        return False
    if when.regex is not None and not _compiled(when.regex).search(f.text):
        return False
    return True


_RE_CACHE: dict[Any, re.Pattern[str]] = {}


def _compiled(pattern: str) -> re.Pattern[str]:
    if pattern not in _RE_CACHE:
        _RE_CACHE[pattern] = re.compile(pattern)
    return _RE_CACHE[pattern]


def _keyword_re(words: tuple[str, ...]) -> re.Pattern[str]:
    if words not in _RE_CACHE:
        _RE_CACHE[words] = re.compile(r"(?<!\w)(" + "|".join(re.escape(w) for w in words) + r")(?!\w)", re.I)
    return _RE_CACHE[words]


@dataclass(frozen=True)
class RuleOutcome:
    """What the rules say: a route (decided), the routes still allowed, and which rules acted."""

    route: str | None = None
    allowed: tuple[str, ...] | None = None
    rule: str | None = None
    notes: tuple[str, ...] = ()


class RuleSet:
    """The guards and the table's [[rules]], run in order on one request."""

    def __init__(self, config: Config) -> None:
        self.names = config.table.names
        self.rules: tuple[Rule, ...] = config.policy.rules
        targets_of, targets = config.table.targets_of, config.targets
        self.vision_routes = tuple(r for r in self.names if any(targets[t].vision for t in targets_of(r)))
        self.window = {r: max((targets[t].context_window for t in targets_of(r)), default=0) for r in self.names}
        self.has_targets = any(targets_of(r) for r in self.names)

    def guards(self, f: Features) -> tuple[tuple[str, ...] | None, tuple[str, ...]]:
        """The routes that can take this request at all (images, context length), and why."""
        if not self.has_targets:
            return None, ()
        allowed, notes = list(self.names), []
        if f.request.has_image and self.vision_routes and len(self.vision_routes) < len(self.names):
            allowed = [r for r in allowed if r in self.vision_routes]
            notes.append("guard:image")
        need = f.context_tokens
        fits = [r for r in allowed if self.window[r] >= need]
        if len(fits) < len(allowed):
            if not fits:  # nothing fits: the largest windows, and the provider says if it is too long
                biggest = max(self.window[r] for r in allowed)
                fits = [r for r in allowed if self.window[r] == biggest]
            allowed = fits
            notes.append(f"guard:context~{need}")
        return (tuple(allowed) if notes else None), tuple(notes)

    def evaluate(self, request: Request) -> RuleOutcome:
        f = Features(request)
        allowed, notes = self.guards(f)
        acted: list[str] = []
        for rule in self.rules:
            if not matches(rule.when, f):
                continue
            then = rule.then
            if then.pass_:
                acted.append(rule.name)
                notes += (f"rule:{rule.name}:pass",)
                break
            if then.allow is not None or then.deny is not None:
                current = allowed if allowed is not None else self.names
                narrowed = tuple(r for r in current if (then.allow is None or r in then.allow)
                                 and (then.deny is None or r not in then.deny))
                if narrowed:  # a rule never leaves nothing to choose from
                    allowed = narrowed
                    acted.append(rule.name)
                    notes += (f"rule:{rule.name}",)
                continue
            route = str(request.metadata.get("pin")) if then.use_pin else then.route
            if route in self.names and (allowed is None or route in allowed):
                return RuleOutcome(route=route, allowed=allowed, rule=rule.name, notes=notes + (f"rule:{rule.name}",))
            notes += (f"rule:{rule.name}:not-allowed",)
        return RuleOutcome(allowed=allowed, rule=acted[-1] if acted else None, notes=notes)
