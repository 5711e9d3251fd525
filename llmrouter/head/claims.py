"""The content view of a request: what it asks, without what it says about itself.

A request can claim to be hard ("expert-level, needs the best model"), tell the router where to
send it, cast the router in a role, or carry chat-template markup with fake turns. None of that
changes how hard the request is, but a head reading the request's states hears it. With
`[router] content_view = true` the decider reads the request's content view instead:

    markup   chat-template tokens and the turns they open: only user turns' text is kept
    claims   lines, sentences and lead-in clauses ("...:") that a small classifier reads as a
             claim about the request, its route or the router, or an instruction to it: a
             character n-gram logistic model (members.Chars) fitted by `quality/claims.py` on the
             package's own examples (llmrouter/data/claim_examples.jsonl) and shipped as
             llmrouter/claims.npz

Fenced code is never touched; a request that is nothing but claims is read as it is. No
scikit-learn at runtime: a segment costs a few microseconds of n-gram lookups.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from llmrouter.head.members import Chars, char_wb_ngrams
from llmrouter.paths import PACKAGE_DIR

DETECTOR = PACKAGE_DIR / "claims.npz"
THRESHOLD = 0.5  # P(claim) from which a segment is left out
NEIGHBOUR = 0.2  # ... and one next to such a segment on its line

_ROLE = r"(?:system|user|assistant|developer|tool|human|ai)"
# a chat-template token, with the role it opens when one follows it
_TURN = re.compile(
    r"<\|?(?:im_start|start_header_id)\|?>\s*(?P<a>" + _ROLE + r")?\s*(?:<\|?end_header_id\|?>)?"
    r"|<\|(?P<b>" + _ROLE + r")\|>"
    r"|<\|?(?:im_end|end|eot_id|endoftext|begin_of_text|end_of_turn)\|?>"
    r"|<start_of_turn>\s*(?P<c>" + _ROLE + r"|model)?|<end_of_turn>"
    r"|\[/?INST\]|<</?SYS>>|</?s>",
    re.IGNORECASE,
)
_FENCE = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
_LEAD_IN = re.compile(r"[^:\n]{12,200}?:\s+(?=\S)")  # "This is a hard one: <the request>"
_TAGS = re.compile(r"\s*(?:[\[{(<][^\]})>\n]{1,120}[\]})>]\s*)+")  # "[level: x] [tier: y] ..."


def without_markup(text: str) -> str:
    """`text` with chat-template tokens removed and the turns they open for any role but the
    user's left out (text before the first token, and between turns, counts as the user's)."""
    parts, role, at = [], "user", 0
    for m in _TURN.finditer(text):
        if role == "user":
            parts.append(text[at:m.start()])
        opened = m.group("a") or m.group("b") or m.group("c")
        role = opened.lower() if opened else ("user" if _closes(m.group(0)) else role)
        at = m.end()
    if role == "user":
        parts.append(text[at:])
    return "".join(parts)


def _closes(token: str) -> bool:
    """Whether a template token ends a turn (what follows is nobody's turn: the user's text)."""
    return bool(re.search(r"end|eot|/s>|\[/INST\]|<</SYS>>", token, re.IGNORECASE))


def segments(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, is_code) spans covering `text`'s non-blank content: fenced code blocks whole,
    other lines split into leading tag groups, lead-in clauses and sentences."""
    out: list[tuple[int, int, bool]] = []
    at = 0
    for m in _FENCE.finditer(text):
        out += _prose_segments(text, at, m.start())
        out.append((m.start(), m.end(), True))
        at = m.end()
    return out + _prose_segments(text, at, len(text))


def _prose_segments(text: str, start: int, end: int) -> list[tuple[int, int, bool]]:
    out = []
    for line in re.finditer(r"[^\n]+", text[start:end]):
        base = start + line.start()
        out += [(base + a, base + b, False) for a, b in _line_spans(line.group(0))]
    return out


def _line_spans(line: str) -> list[tuple[int, int]]:
    """A line's pieces: a leading run of bracketed tags, a lead-in clause ending in a colon, then
    its sentences."""
    spans, at = [], 0
    for pattern in (_TAGS, _LEAD_IN):
        m = pattern.match(line, at)
        if m and m.end() < len(line.rstrip()):
            spans.append((at, m.end()))
            at = m.end()
    for piece in _SENTENCE_END.split(line[at:]):
        i = line.index(piece, at)
        spans.append((i, i + len(piece)))
        at = i + len(piece)
    return [(a, b) for a, b in spans if line[a:b].strip()]


@dataclass(frozen=True)
class ClaimDetector:
    """P(claim) for text segments: claims about a request, its route or the router."""

    member: Chars
    threshold: float = THRESHOLD
    info: dict[str, Any] | None = None  # how it did in cross-validation when fitted
    digest: str = ""  # of the stored file: what the view's features are keyed to

    def proba(self, texts: list[str]) -> np.ndarray:
        """P(claim) per text: the member's two-route logistic, one sparse row at a time (a dense
        TF-IDF row per segment would cost a long request milliseconds)."""
        m = self.member
        index, w = m._index, m.coef[1] - m.coef[0]
        out = np.full(len(texts), m.intercept[1] - m.intercept[0], dtype=np.float64)
        for i, text in enumerate(texts):
            counts = Counter(j for j in map(index.get, char_wb_ngrams(text)) if j is not None)
            if counts:
                cols = np.fromiter(counts, dtype=np.int64, count=len(counts))
                row = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))) * m.idf[cols]
                out[i] += row @ w[cols] / np.sqrt(row @ row)
        return 1.0 / (1.0 + np.exp(-out))

    def save(self, path: Path) -> None:
        meta = {"member": self.member.meta(), "threshold": self.threshold, "info": self.info or {}}
        blob = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        np.savez_compressed(path, meta=blob, **self.member.arrays())  # type: ignore[arg-type]  # numpy's stub: **kwds as allow_pickle

    @classmethod
    def load(cls, path: Path) -> ClaimDetector:
        with np.load(path, allow_pickle=False) as z:
            arr = {k: z[k] for k in z.files}
        meta = json.loads(bytes(arr.pop("meta").astype(np.uint8)).decode())
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        return cls(Chars.restore(meta["member"], arr), float(meta["threshold"]), meta.get("info"), digest)


@dataclass(frozen=True)
class ContentView:
    """A request's content view (see the module docstring); `digest` keys the features read."""

    detector: ClaimDetector

    def __call__(self, text: str) -> str:
        plain = without_markup(text)
        spans, drop = self._dropped(plain)
        return _without(plain, [spans[i] for i in sorted(drop)]).strip()

    def claims(self, text: str) -> list[str]:
        """The pieces of `text` the view leaves out (for tests and inspection)."""
        plain = without_markup(text)
        spans, drop = self._dropped(plain)
        return [plain[spans[i][0]:spans[i][1]] for i in sorted(drop)]

    def _dropped(self, plain: str) -> tuple[list[tuple[int, int, bool]], set[int]]:
        """`plain`'s segments, and which to leave out: each the detector is sure is a claim, and
        next to one on the same line, each it finds at least weakly claim-like (a game or a role
        set up around the claim: "let's play: <claim>. Stay in it.")."""
        spans = segments(plain)
        prose = [i for i, (_, _, code) in enumerate(spans) if not code]
        p = np.zeros(len(spans))
        p[prose] = self.detector.proba([plain[spans[i][0]:spans[i][1]] for i in prose])
        drop = {i for i in prose if p[i] >= self.detector.threshold}
        for seed in sorted(drop):
            for step in (-1, 1):
                i = seed
                while self._spreads(plain, spans, i, i + step) and p[i + step] >= NEIGHBOUR:
                    i += step
                    drop.add(i)
        if prose and drop >= set(prose):  # a request is not all claims: keep its most content-like piece
            drop.discard(prose[int(np.argmin(p[prose]))])
        return spans, drop

    @staticmethod
    def _spreads(plain: str, spans: list[tuple[int, int, bool]], i: int, j: int) -> bool:
        """Whether a claim at segment i reaches its neighbour j: same line, not code, and not
        forward from a lead-in ("...:" introduces the request itself)."""
        if not 0 <= j < len(spans) or spans[j][2]:
            return False
        first, second = sorted((i, j))
        lead_in = j > i and plain[spans[i][0]:spans[i][1]].rstrip().endswith(":")
        return "\n" not in plain[spans[first][1]:spans[second][0]] and not lead_in


def _without(text: str, spans: list[tuple[int, int, bool]]) -> str:
    """`text` less the given spans (in order) and the blanks that follow each."""
    out, at = [], 0
    for a, b, _ in spans:
        out.append(text[at:a])
        at = b
        while at < len(text) and text[at] in " \t":
            at += 1
    out.append(text[at:])
    return "".join(out)


@lru_cache(maxsize=1)
def content_view() -> ContentView:
    """The packaged content view (its detector loaded once)."""
    return ContentView(ClaimDetector.load(DETECTOR))
