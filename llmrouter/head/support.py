"""Where the head's evidence runs out: a hinge beyond the support of its fit rows that shrinks the
confidence of requests far from them toward the uniform, so that "unsure" means something to
escalation.

A Support holds, for each of the text statistics of head/textstats.py, the median and the
largest value over the fit rows, each row scored out of fold (its n-gram coverage against a
vocabulary it did not help build, as a new request would be). A request within every edge is
untouched. Beyond an edge, the head extrapolates; its probabilities p become

    (1 - w) * p + w / K,    1 - w = 1 / (1 + e),    e = max over statistics of (x - edge) / (edge - median)

(K routes): the head's word counts in full up to the edge of what it was fitted on, and beyond
it falls as one over the distance from the support, in support-widths (edge - median): half at
one width beyond, a quarter at three. (The same form as the familiarity stretch of the
temperature, head/familiarity.py, with alpha 1.) It never reaches zero, so mixing with the
uniform keeps the ranking of the routes: the decision never changes, only its confidence. No
number here is fitted to pass a benchmark: the edges and widths are the fit rows' own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from llmrouter.head.textstats import NAMES, ngram_vocabulary, text_stats

FOLDS = 5  # out-of-fold scoring of the fit rows
MIN_WIDTH = 1e-3  # a statistic every fit row has at one value: any excess is far


@dataclass(frozen=True)
class Support:
    median: np.ndarray  # (S,) over the fit rows, out of fold
    edge: np.ndarray  # (S,) the largest fit-row value: the support's edge
    vocabulary: frozenset[str]  # Latin n-grams of the fit rows (textstats.unknown)

    @classmethod
    def fit(cls, texts: Sequence[str], folds: int = FOLDS) -> Support:
        """The support of `texts` (the rows the head was fitted on)."""
        stats = out_of_fold_stats(texts, folds)
        return cls(np.median(stats, axis=0), stats.max(axis=0), ngram_vocabulary(texts))

    def stats(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([text_stats(str(t), self.vocabulary) for t in texts]).reshape(len(texts), len(NAMES))

    def excess(self, stats: np.ndarray) -> np.ndarray:
        """Per row and statistic: how far beyond the edge, in support-widths (0 inside)."""
        width = np.maximum(self.edge - self.median, MIN_WIDTH)
        return np.maximum(0.0, (stats - self.edge) / width)

    def weight(self, texts: Sequence[str]) -> np.ndarray:
        """Per row: the share of the uniform in its softened probabilities (0: inside the support)."""
        if not len(texts):
            return np.zeros(0)
        e = self.excess(self.stats(texts)).max(axis=1)
        return e / (1.0 + e)

    def soften(self, proba: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """`proba` (rows: texts) shrunk toward the uniform beyond the support; argmax unchanged."""
        w = self.weight(texts)[:, None]
        return (1.0 - w) * proba + w / proba.shape[1]

    # --- storing (inside a fitted head's .npz) -------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {"names": list(NAMES), "folds": FOLDS}

    def arrays(self) -> dict[str, np.ndarray]:
        vocab = json.dumps(sorted(self.vocabulary), ensure_ascii=False).encode()
        return {"median": self.median, "edge": self.edge, "vocab": np.frombuffer(vocab, dtype=np.uint8)}

    @classmethod
    def restore(cls, meta: dict[str, Any], arr: dict[str, np.ndarray]) -> Support:
        if tuple(meta.get("names", ())) != NAMES:
            raise ValueError(f"support statistics {meta.get('names')} are not {list(NAMES)}")
        vocab = frozenset(json.loads(bytes(arr["vocab"].astype(np.uint8)).decode()))
        return cls(np.asarray(arr["median"], dtype=np.float64), np.asarray(arr["edge"], dtype=np.float64), vocab)


def out_of_fold_stats(texts: Sequence[str], folds: int = FOLDS) -> np.ndarray:
    """Each text's statistics with the n-gram vocabulary of the other folds (interleaved)."""
    texts = [str(t) for t in texts]
    fold = np.arange(len(texts)) % max(1, min(folds, len(texts)))
    out = np.zeros((len(texts), len(NAMES)))
    for f in np.unique(fold):
        vocab = ngram_vocabulary(t for t, g in zip(texts, fold) if g != f)
        for i in np.flatnonzero(fold == f):
            out[i] = text_stats(texts[i], vocab)
    return out
