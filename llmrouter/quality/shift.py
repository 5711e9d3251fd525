"""Calibration that holds under shift: the head's temperature and its out-of-distribution factor
(head/familiarity.py) are fitted on out-of-fold logits from folds that hold out whole groups of
requests (sources; or, where the records name none, clusters within each route), and the
calibration error is reported the honest way: each fold's rows are scored with a temperature
fitted on the other folds only (cross-fitted).

    folds -> per fold: head logits and familiarity ratios of the held-out rows
          -> (temperature, alpha) that minimise the negative log-likelihood
          -> grouped-CV accuracy, macro-F1 and ECE of the calibrated probabilities
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llmrouter.errors import need
from llmrouter.head.calibration import fit_temperature, softmax
from llmrouter.head.familiarity import Familiarity, stretch
from llmrouter.quality import evaluate as ev

ALPHAS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
Folds = Sequence[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Calibration:
    temperature: float
    alpha: float  # growth of the temperature with the distance ratio (0: no OOD softening)


def out_of_fold_ratios(feats: dict[str, np.ndarray], blocks: tuple[str, ...], folds: Folds,
                       extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """Each held-out row's familiarity ratio against its fold's training rows (NaN: in no fold)."""
    n = len(next(iter(feats.values())))
    out = np.full(n, np.nan)
    for tr, te in folds:
        train = {b: feats[b][tr] for b in blocks}
        if extra is not None:
            train = {b: np.concatenate([train[b], extra[b]]) for b in blocks}
        out[te] = Familiarity.fit(train, blocks).ratio({b: feats[b][te] for b in blocks})
    return out


def fit(logits: np.ndarray, y: np.ndarray, ratio: np.ndarray | None) -> Calibration:
    """The temperature and alpha of least NLL (alpha from a grid, a temperature for each)."""
    if ratio is None:
        return Calibration(fit_temperature(logits, y), 0.0)
    best: tuple[float, Calibration] = (np.inf, Calibration(1.0, 0.0))
    for alpha in ALPHAS:
        scaled = logits / stretch(ratio, alpha)[:, None]
        t = fit_temperature(scaled, y)
        p = softmax(scaled / t)
        nll = -float(np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))
        if nll < best[0] - 1e-9:
            best = (nll, Calibration(t, alpha))
    return best[1]


def apply(logits: np.ndarray, ratio: np.ndarray | None, cal: Calibration) -> np.ndarray:
    factor = 1.0 if ratio is None else stretch(ratio, cal.alpha)[:, None]
    return softmax(logits / (cal.temperature * factor))


def cross_fitted(logits: np.ndarray, y: np.ndarray, ratio: np.ndarray | None, folds: Folds) -> np.ndarray:
    """Calibrated out-of-fold probabilities, each fold's with a calibration fitted on the others'
    rows: an ECE that was not fitted on the rows it scores."""
    p = np.full(logits.shape, np.nan)
    for _, te in folds:
        rest = np.setdiff1d(np.concatenate([f[1] for f in folds]), te)
        r = None if ratio is None else ratio[rest]
        cal = fit(logits[rest], y[rest], r)
        p[te] = apply(logits[te], None if ratio is None else ratio[te], cal)
    return p


def grouped_metrics(y: np.ndarray, proba: np.ndarray, routes: Sequence[str]) -> dict[str, float]:
    """Accuracy, macro-F1 and ECE over the rows that have probabilities."""
    used = np.flatnonzero(~np.isnan(proba[:, 0]))
    m = ev.metrics(y[used], proba[used].argmax(1), proba[used].max(1), routes)
    return {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4),
            "ece": round(m["ece"], 4), "n": int(len(used))}


def cluster_folds(y: np.ndarray, vectors: np.ndarray, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds for records without sources: within each route, k-means clusters of the requests'
    vectors, each cluster a fold. A held-out request's nearest same-route neighbours are in its own
    fold, so the head is scored on requests unlike those it was fitted on (as under a new source)."""
    need("sklearn", "tune", "clustering requests into folds")
    from sklearn.cluster import KMeans

    y = np.asarray(y)
    z = (vectors - vectors.mean(0)) / (vectors.std(0) + 1e-6)
    fold = np.zeros(len(y), dtype=int)
    totals = np.zeros(k, dtype=int)  # rows per fold so far: folds stay about the same size
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        if len(idx) < 2 * k:
            fold[idx] = np.arange(len(idx)) % k
            totals += np.bincount(fold[idx], minlength=k)
            continue
        km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(z[idx])
        sizes = np.bincount(km.labels_, minlength=k)
        # one cluster per fold; the largest to the fold that has least so far
        for c, f in zip(np.argsort(-sizes), np.argsort(totals, kind="stable")):
            fold[idx[km.labels_ == c]] = f
            totals[f] += sizes[c]
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]
