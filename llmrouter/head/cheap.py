"""The cheap first stage of a cascade: a route from the request's text alone, no model pass.

A CheapStage scores the routes with a character n-gram member (members.Chars) and a
temperature. It decides outright when its top probability reaches `threshold`; the router model
decides the rest. Where it decides, the probabilities it reports use a second temperature
(`decided_temperature`), fitted on the rows it decides: a temperature fitted on every row is set
by the many rows the stage is unsure of and leaves it underconfident where it is sure. Two ways
to get one:

    fitted     `llmrouter tune` fits it on the labelled rows and picks the threshold by
               cross-validation so the cascade's accuracy stays within a point of the model's;
               both temperatures come from the same (grouped) folds; it is stored inside the
               fitted head ("cheap:chars")
    examples   built when the table is loaded from its routes' descriptions and examples: each
               route's TF-IDF centroid, cosine similarity as logits ("cheap:examples"). It is
               never confident enough to decide first (threshold = inf); it exists so that a
               request the busy router model cannot take in time gets a real decision, not
               silently the default route

Reading the text costs about 0.1-0.5 ms; nothing here imports scikit-learn.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from llmrouter.head.calibration import softmax
from llmrouter.head.members import TEXT, Chars, char_wb_ngrams
from llmrouter.head.support import Support

EXAMPLES_TEMPERATURE = 0.05  # cosine similarities live in [0, 1]: sharpen them into probabilities


@dataclass(frozen=True)
class CheapStage:
    routes: tuple[str, ...]
    member: Chars
    temperature: float = 1.0
    threshold: float = math.inf  # inf: only ever used when the router model is busy
    name: str = "cheap:chars"
    info: dict[str, Any] = field(default_factory=dict)  # how it did in cross-validation
    decided_temperature: float | None = None  # on the rows it decides; None: `temperature`
    view: Callable[[str], str] | None = None  # what it reads of a request (the decider's content view)
    support: Support | None = None  # its head's: softens what it reports beyond the fit rows (not what it decides)

    def read(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities per row (as reported) and whether the stage decides each row alone."""
        logits = self.member.logits({TEXT: np.array(list(texts), dtype=str)})
        p = softmax(logits / self.temperature)
        decides = p.max(axis=1) >= self.threshold
        if self.decided_temperature is not None and decides.any():
            p[decides] = softmax(logits[decides] / self.decided_temperature)
        if self.support is not None:
            p = self.support.soften(p, texts)
        return p, decides

    def proba(self, texts: Sequence[str]) -> np.ndarray:
        return self.read(texts)[0]

    def decide(self, text: str) -> tuple[dict[str, float], bool]:
        """Scores over the routes, and whether the stage decides alone (its top probability, at
        the temperature fitted on every row, reaches the threshold)."""
        p, decides = self.read([self.view(text) if self.view is not None else text])
        return {r: float(v) for r, v in zip(self.routes, p[0])}, bool(decides[0])

    def scores(self, text: str) -> dict[str, float]:
        return self.decide(text)[0]

    def reading(self, view: Callable[[str], str]) -> CheapStage:
        """This stage, scoring what `view` leaves of a request (as the head it was tuned with)."""
        return replace(self, view=view)

    # --- storing (inside a fitted head's .npz) -------------------------------------------------
    def meta(self) -> dict[str, Any]:
        t = self.threshold if math.isfinite(self.threshold) else None
        return {"member": self.member.meta(), "temperature": self.temperature, "threshold": t,
                "name": self.name, "info": self.info, "decided_temperature": self.decided_temperature}

    @classmethod
    def restore(cls, routes: Sequence[str], meta: dict[str, Any], arr: dict[str, np.ndarray]) -> CheapStage:
        t, td = meta.get("threshold"), meta.get("decided_temperature")
        return cls(tuple(routes), Chars.restore(meta["member"], arr), float(meta["temperature"]),
                   math.inf if t is None else float(t), str(meta.get("name", "cheap:chars")),
                   dict(meta.get("info", {})), None if td is None else float(td))

    # --- from a route table's own words --------------------------------------------------------
    @classmethod
    def from_examples(cls, routes: Sequence[str], texts_per_route: Sequence[Sequence[str]]) -> CheapStage:
        """Nearest-centroid over TF-IDF character n-grams of each route's texts (its description
        and examples): a zero-shot stage for any table, no fitting library needed."""
        docs = [[char_wb_ngrams(t) for t in texts] for texts in texts_per_route]
        df: Counter[str] = Counter(g for route_docs in docs for d in route_docs for g in set(d))
        vocab = tuple(sorted(df))
        n_docs = sum(len(d) for d in docs)
        idf = np.array([math.log((1 + n_docs) / (1 + df[g])) + 1.0 for g in vocab])  # sklearn's smooth idf
        member = Chars(vocab, idf, np.zeros((len(routes), len(vocab))), np.zeros(len(routes)))
        coef = np.zeros((len(routes), len(vocab)))
        for i, texts in enumerate(texts_per_route):
            if texts:
                centroid = member._vectorize(list(texts)).mean(axis=0)
                norm = np.linalg.norm(centroid)
                coef[i] = centroid / norm if norm else centroid
        member = Chars(vocab, idf, coef, np.zeros(len(routes)))
        return cls(tuple(routes), member, EXAMPLES_TEMPERATURE, math.inf, "cheap:examples")
