"""What a request's characters say about how far it is from ordinary prompts, in four numbers
(larger: stranger), for head/support.py:

    digits        share of the non-space characters that are digits
    digit_words   share of the whitespace-separated words that hold a digit
    unknown       share of the Latin-script character n-grams the fit rows never use
    run           longest run of printable ASCII without a space (a base64 blob, a hash)

Why these: the router model's hidden states place hex dumps, logs, number tables and base64 among
ordinary prompts (bench/results/calibration.md), while their characters do not look like any
prompt. The shares are one-sided 95% Wilson bounds (lower, so a short prompt of a few characters
cannot look extreme by chance; "2+2" is 40% digits, a 600-character hex dump has earned its 48%).
`unknown` reads only words written in Latin script: the fit rows are Latin-script, so for another
script it would only say "not Latin", and the head does reasonably on Chinese prompts it has
never seen (71% right at 0.72 confidence on the dev file): those are no evidence here.
Plain Python over the text: about 0.1 ms for a typical prompt, at most about 10 ms (MAX_CHARS).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable

import numpy as np

from llmrouter.head.members import char_wb_ngrams

NAMES = ("digits", "digit_words", "unknown", "run")
Z = 1.645  # one-sided 95%
MAX_CHARS = 8192  # a request's kind shows in its head: a huge one costs no more than a large one
_LATIN_WORD = re.compile(r"[\u0000-\u024f\u1e00-\u1eff]+")  # ASCII, Latin-1, Extended-A/B, Additional
_ASCII_RUN = re.compile(r"[!-~]+")
_DIGIT = re.compile(r"\d")


def lower_bound(k: int, n: int) -> float:
    """One-sided Wilson lower bound of a share k/n (0 with no evidence)."""
    if n == 0:
        return 0.0
    p = k / n
    centre = p + Z * Z / (2 * n)
    spread = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + Z * Z / n))


def latin_ngrams(text: str) -> list[str]:
    """The character n-grams (as the Chars member reads them) of the text's Latin-script words."""
    return char_wb_ngrams(" ".join(w for w in text.split() if _LATIN_WORD.fullmatch(w)))


def ngram_vocabulary(texts: Iterable[str], min_count: int = 2) -> frozenset[str]:
    """The Latin-script n-grams used by at least `min_count` of the texts."""
    counts: dict[str, int] = {}
    for text in texts:
        for g in set(latin_ngrams(text)):
            counts[g] = counts.get(g, 0) + 1
    return frozenset(g for g, c in counts.items() if c >= min_count)


def text_stats(text: str, vocabulary: Collection[str]) -> np.ndarray:
    """The four numbers of NAMES for one text (its first MAX_CHARS characters)."""
    text = text[:MAX_CHARS]
    chars = len(text) - sum(map(str.isspace, text))
    digits = sum(map(str.isdigit, text))
    words = text.split()
    digit_words = sum(1 for w in words if _DIGIT.search(w))
    grams = latin_ngrams(text)
    unknown = sum(1 for g in grams if g not in vocabulary)
    run = max(map(len, _ASCII_RUN.findall(text)), default=0)
    return np.array([lower_bound(digits, chars), lower_bound(digit_words, len(words)),
                     lower_bound(unknown, len(grams)), float(run)])
