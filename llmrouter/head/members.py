"""The parts a fitted head is made of: logistic regressions over feature blocks or over text.

A FittedHead (head/fitted.py) adds its members' log-probabilities, each times its weight, and
then applies one temperature. Two kinds of member:

    Dense  over blocks of the router model's forward pass: `mean`, `last` (final layer; mean over
           the request's tokens, state of the prompt's last token), `mean@L` / `last@L` (the same
           at layer L, read by llamacpp/taps.py) and `logp` (the model's own route log-probs)
    Chars  over the request's character n-grams (2-4, within words; TF-IDF, sublinear tf, l2):
           picks up surface cues (code syntax, scripts, formats) the small model's states blur

Each member stores plain arrays (and, for Chars, its vocabulary as JSON): no pickle.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from llmrouter.errors import need

TEXT = "text"  # the feature key holding the request texts (an array of str)
NGRAMS = (2, 4)


def design(features: dict[str, np.ndarray], blocks: tuple[str, ...]) -> np.ndarray:
    """The input matrix: the chosen blocks side by side."""
    missing = [b for b in blocks if b not in features]
    if missing:
        raise ValueError(f"feature block(s) {missing} not observed")
    return np.hstack([np.asarray(features[b], dtype=np.float64) for b in blocks])


_SPACES = re.compile(r"\s\s+")


def char_wb_ngrams(text: str) -> list[str]:
    """Character n-grams within words, padded by a space: scikit-learn's `char_wb` analyzer
    (lowercased), so a head fitted with TfidfVectorizer reads the same n-grams."""
    lo, hi = NGRAMS
    grams: list[str] = []
    for w in _SPACES.sub(" ", text.lower()).split():
        w = f" {w} "
        for n in range(lo, hi + 1):
            if len(w) <= n:
                grams.append(w)  # a word shorter than n counts once, as itself
                break
            grams.extend(w[i:i + n] for i in range(len(w) - n + 1))
    return grams


def layers_of(blocks: tuple[str, ...]) -> tuple[int, ...]:
    """The intermediate layers a set of blocks reads (`mean@24` -> 24)."""
    return tuple(sorted({int(b.split("@", 1)[1]) for b in blocks if "@" in b}))


def _logistic(x: Any, y: np.ndarray, k: int, C: float, seed: int, sample_weight: Any = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression; (K, D) coefficients and (K,) intercepts over all routes."""
    need("sklearn", "tune", "fitting a head")
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    clf = LogisticRegression(C=C, max_iter=3000, random_state=seed)
    with threadpool_limits(1):  # small problem: BLAS threads only fight (10x slower on 2 cores)
        clf.fit(x, y, sample_weight=sample_weight)
    present = clf.classes_
    coef = np.zeros((k, x.shape[1]))
    intercept = np.full(k, -20.0)  # a route with no training rows is (almost) never chosen
    if len(present) == 2:  # sklearn's binary case has one row of coefficients
        coef[present[1]], intercept[present[1]] = clf.coef_[0] / 2, clf.intercept_[0] / 2
        coef[present[0]], intercept[present[0]] = -clf.coef_[0] / 2, -clf.intercept_[0] / 2
    else:
        coef[present], intercept[present] = clf.coef_, clf.intercept_
    return coef, intercept


@dataclass(frozen=True)
class Dense:
    """Logistic regression over standardised feature blocks."""

    kind: ClassVar[str] = "dense"
    blocks: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (K, D)
    intercept: np.ndarray  # (K,)
    weight: float = 1.0
    C: float = 0.0

    @classmethod
    def fit(cls, features: dict[str, np.ndarray], y: np.ndarray, k: int, *, blocks: tuple[str, ...],
            C: float, seed: int = 0, weight: float = 1.0, sample_weight: Any = None) -> Dense:
        x = design(features, blocks)
        center, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
        coef, intercept = _logistic((x - center) / scale, y, k, C, seed, sample_weight)
        return cls(tuple(blocks), center, scale, coef, intercept, weight, C)

    def logits(self, features: dict[str, np.ndarray]) -> np.ndarray:
        x = (design(features, self.blocks) - self.center) / self.scale
        return x @ self.coef.T + self.intercept

    @property
    def reads(self) -> tuple[str, ...]:
        return self.blocks

    def meta(self) -> dict[str, Any]:
        return {"kind": self.kind, "blocks": list(self.blocks), "weight": self.weight, "C": self.C}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"center": self.center, "scale": self.scale, "coef": self.coef, "intercept": self.intercept}

    @classmethod
    def restore(cls, meta: dict[str, Any], arr: dict[str, np.ndarray]) -> Dense:
        return cls(tuple(meta["blocks"]), arr["center"], arr["scale"], arr["coef"], arr["intercept"],
                   float(meta.get("weight", 1.0)), float(meta.get("C", 0.0)))


@dataclass(frozen=True)
class Chars:
    """Logistic regression over the request's character n-gram TF-IDF vector."""

    kind: ClassVar[str] = "chars"
    vocab: tuple[str, ...]
    idf: np.ndarray  # (D,)
    coef: np.ndarray  # (K, D)
    intercept: np.ndarray  # (K,)
    weight: float = 1.0
    C: float = 0.0

    MAX_FEATURES: ClassVar[int] = 30000

    @classmethod
    def fit(cls, features: dict[str, np.ndarray], y: np.ndarray, k: int, *, C: float, seed: int = 0,
            weight: float = 1.0, sample_weight: Any = None) -> Chars:
        need("sklearn", "tune", "fitting a character n-gram member")
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = [str(t) for t in features[TEXT]]
        vec = TfidfVectorizer(analyzer="char_wb", ngram_range=NGRAMS, min_df=2, sublinear_tf=True,
                              max_features=cls.MAX_FEATURES, dtype=np.float64)
        try:
            x = vec.fit_transform(texts)
        except ValueError:  # too few texts for min_df=2: every n-gram counts
            vec.set_params(min_df=1)
            x = vec.fit_transform(texts)
        vocab = [""] * len(vec.vocabulary_)
        for gram, j in vec.vocabulary_.items():
            vocab[j] = gram
        coef, intercept = _logistic(x, y, k, C, seed, sample_weight)
        return cls(tuple(vocab), vec.idf_.copy(), coef, intercept, weight, C)

    @cached_property
    def _index(self) -> dict[str, int]:
        """n-gram -> column, built on first use."""
        return {g: j for j, g in enumerate(self.vocab)}

    def _vectorize(self, texts: list[str]) -> np.ndarray:
        """TF-IDF rows as TfidfVectorizer fitted them (sublinear tf, idf, l2), without importing
        scikit-learn: a decision must not pay its import (about half a second on a cold start)."""
        index = self._index
        out = np.zeros((len(texts), len(self.vocab)))
        for i, text in enumerate(texts):
            counts: dict[int, int] = {}
            for gram in char_wb_ngrams(text):
                j = index.get(gram)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            if counts:
                cols = np.fromiter(counts, dtype=np.int64, count=len(counts))
                tf = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))
                row = tf * self.idf[cols]
                out[i, cols] = row / np.sqrt(row @ row)
        return out

    def logits(self, features: dict[str, np.ndarray]) -> np.ndarray:
        if TEXT not in features:
            raise ValueError("feature block(s) ['text'] not observed")
        x = self._vectorize([str(t) for t in features[TEXT]])
        return x @ self.coef.T + self.intercept

    @property
    def reads(self) -> tuple[str, ...]:
        return (TEXT,)

    def meta(self) -> dict[str, Any]:
        return {"kind": self.kind, "weight": self.weight, "C": self.C, "ngrams": list(NGRAMS)}

    def arrays(self) -> dict[str, np.ndarray]:
        vocab = np.frombuffer(json.dumps(list(self.vocab), ensure_ascii=False).encode(), dtype=np.uint8)
        return {"idf": self.idf, "coef": self.coef, "intercept": self.intercept, "vocab": vocab}

    @classmethod
    def restore(cls, meta: dict[str, Any], arr: dict[str, np.ndarray]) -> Chars:
        if tuple(meta.get("ngrams", NGRAMS)) != NGRAMS:
            raise ValueError(f"character n-grams {meta.get('ngrams')} are not {list(NGRAMS)}")
        vocab = tuple(json.loads(bytes(arr["vocab"].astype(np.uint8)).decode()))
        return cls(vocab, arr["idf"], arr["coef"], arr["intercept"], float(meta.get("weight", 1.0)),
                   float(meta.get("C", 0.0)))


KINDS: dict[str, Any] = {"dense": Dense, "chars": Chars}
Member = Dense | Chars
