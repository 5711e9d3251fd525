"""Fit the cascade's cheap first stage (head/cheap.py) and choose where it may decide alone.

The stage is a character n-gram member over the request text. Its out-of-fold probabilities
(on the same folds as the rest of tuning, grouped by source or by cluster where the data allow)
are calibrated with one temperature; then, over a grid of thresholds, the cascade "cheap stage
where its top probability reaches the threshold, the router model elsewhere" is scored against
the model alone. The lowest threshold whose accuracy stays within `max_loss` (one point) of the
model's wins: the largest share of requests decided without a model pass at no real cost in
accuracy. A second temperature is then fitted on the out-of-fold rows the stage decides: what it
reports where it decides (the first one, fitted mostly on rows it is unsure of, left it at 0.75
confidence where it was right 95% of the time). `cross_fitted` scores the whole cascade the
honest way: each fold's rows with a threshold and temperatures chosen on the other folds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from llmrouter.head.calibration import fit_temperature, softmax
from llmrouter.head.cheap import CheapStage
from llmrouter.head.members import Chars

CHEAP_C = 10.0
THRESHOLDS = tuple(round(float(t), 3) for t in np.arange(0.4, 1.0, 0.025))
MAX_LOSS = 0.01  # accuracy the cascade may give up against the model alone
MIN_DECIDED = 20  # rows the stage must decide for a temperature of their own


@dataclass(frozen=True)
class CascadeChoice:
    """Where the cheap stage decides, and how each stage did there (cross-validated)."""

    threshold: float  # inf: the stage never decides first (only when the model is busy)
    temperature: float
    share: float  # of requests the cheap stage decides
    cheap_accuracy: float  # on the requests it decides
    model_accuracy: float  # of the router model on the rest
    accuracy: float  # of the cascade
    model_alone: float  # of the router model on every request
    cheap_alone: float  # of the cheap stage on every request
    decided_temperature: float | None = None  # fitted on the rows it decides (None: too few)
    grouped_cv: dict[str, float] = field(default_factory=dict)  # the cascade, cross-fitted on the folds
    grid: list[dict[str, float]] = field(default_factory=list)
    passed: np.ndarray | None = field(default=None, repr=False, compare=False)  # rows left to the model

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k not in ("grid", "passed")}
        out["threshold"] = None if math.isinf(self.threshold) else self.threshold
        return out


def stage_accuracy(y: np.ndarray, cheap_p: np.ndarray, model_p: np.ndarray, threshold: float,
                   use: np.ndarray | None = None) -> dict[str, float]:
    """Share, per-stage and overall accuracy of the cascade at `threshold` (or where `use`)."""
    use = cheap_p.max(axis=1) >= threshold if use is None else use
    cheap_ok = cheap_p.argmax(axis=1) == y
    model_ok = model_p.argmax(axis=1) == y
    both = np.where(use, cheap_ok, model_ok)
    return {
        "threshold": threshold,
        "share": float(use.mean()) if len(y) else 0.0,
        "cheap_accuracy": float(cheap_ok[use].mean()) if use.any() else 0.0,
        "model_accuracy": float(model_ok[~use].mean()) if (~use).any() else 0.0,
        "accuracy": float(both.mean()) if len(y) else 0.0,
    }


def choose(y: np.ndarray, cheap_logits: np.ndarray, model_p: np.ndarray, max_loss: float = MAX_LOSS
           ) -> CascadeChoice:
    """The lowest threshold that keeps the cascade within `max_loss` of the model alone."""
    temperature = fit_temperature(cheap_logits, y)
    cheap_p = softmax(cheap_logits / temperature)
    model_alone = float((model_p.argmax(axis=1) == y).mean())
    grid = [stage_accuracy(y, cheap_p, model_p, t) for t in THRESHOLDS]
    ok = [g for g in grid if g["share"] > 0 and g["accuracy"] >= model_alone - max_loss - 1e-12]
    best = min(ok, key=lambda g: g["threshold"]) if ok else stage_accuracy(y, cheap_p, model_p, math.inf)
    passed = cheap_p.max(axis=1) < best["threshold"]
    return CascadeChoice(
        threshold=best["threshold"], temperature=temperature, share=best["share"],
        cheap_accuracy=best["cheap_accuracy"], model_accuracy=best["model_accuracy"],
        accuracy=best["accuracy"], model_alone=model_alone,
        cheap_alone=float((cheap_p.argmax(axis=1) == y).mean()),
        decided_temperature=fit_temperature(cheap_logits[~passed], y[~passed]) if (~passed).sum() >= MIN_DECIDED else None,
        grid=grid, passed=passed,
    )


def cascade_proba(cheap_logits: np.ndarray, model_p: np.ndarray, choice: CascadeChoice) -> np.ndarray:
    """The cascade's probabilities per row under `choice`: the cheap stage's where it decides
    (at its decided temperature), the model's elsewhere."""
    p = softmax(cheap_logits / choice.temperature)
    use = p.max(axis=1) >= choice.threshold
    if choice.decided_temperature is not None and use.any():
        p[use] = softmax(cheap_logits[use] / choice.decided_temperature)
    return np.where(use[:, None], p, model_p)


def cross_fitted(y: np.ndarray, cheap_logits: np.ndarray, model_p: np.ndarray,
                 folds: Sequence[tuple[np.ndarray, np.ndarray]], max_loss: float = MAX_LOSS) -> np.ndarray:
    """The cascade's out-of-fold probabilities, each fold's rows under a choice (threshold, both
    temperatures) made on the other folds' rows; `model_p` should be cross-fitted too. NaN rows:
    in no fold (or without model probabilities)."""
    p = np.full(model_p.shape, np.nan)
    rows = np.concatenate([te for _, te in folds])
    rows = rows[~np.isnan(model_p[rows, 0])]
    for _, te in folds:
        te = np.intersect1d(te, rows)
        rest = np.setdiff1d(rows, te)
        if len(te) and len(rest):
            p[te] = cascade_proba(cheap_logits[te], model_p[te], choose(y[rest], cheap_logits[rest], model_p[rest], max_loss))
    return p


def out_of_fold_logits(feats: dict[str, np.ndarray], y: np.ndarray, k: int,
                       folds: Sequence[tuple[np.ndarray, np.ndarray]],
                       extra: tuple[dict[str, np.ndarray], np.ndarray] | None = None, seed: int = 0) -> np.ndarray:
    """The cheap member's logits for each row, from a member fitted without that row's fold."""
    texts = np.asarray(feats["text"])
    logits = np.zeros((len(y), k))
    for tr, te in folds:
        train_text, train_y = texts[tr], y[tr]
        if extra is not None:
            train_text = np.concatenate([train_text, np.asarray(extra[0]["text"])])
            train_y = np.concatenate([train_y, extra[1]])
        member = Chars.fit({"text": train_text}, train_y, k, C=CHEAP_C, seed=seed)
        logits[te] = member.logits({"text": texts[te]})
    return logits


def fit_stage(texts: np.ndarray, y: np.ndarray, routes: Sequence[str], choice: CascadeChoice, seed: int = 0
              ) -> CheapStage:
    """The stage on all the given rows, with the cross-validated temperature and threshold."""
    member = Chars.fit({"text": texts}, y, len(routes), C=CHEAP_C, seed=seed)
    return CheapStage(tuple(routes), member, choice.temperature, choice.threshold, "cheap:chars",
                      choice.summary(), choice.decided_temperature)
