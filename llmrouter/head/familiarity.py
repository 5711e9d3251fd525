"""How far a request is from anything the head was fitted on: an out-of-distribution signal that
softens the head's confidence, so that "unsure" means something to escalation.

A Familiarity holds the head's training rows projected onto their leading principal components
(of the standardised blocks the head's first dense member reads). For a request it measures the
mean distance to its `k` nearest training rows, divided by the same distance among the training
rows themselves (`ref`): about 1 for a familiar request, more for a strange one. The head's
temperature is multiplied by

    1 + alpha * max(0, ratio - 1)

`alpha` is fitted by `llmrouter tune` on folds grouped by source (or by cluster): whole groups of
requests the fold's head never saw, the kind of shift users bring. alpha = 0: no effect.
Plain numpy (a projection and a nearest-neighbour search over a few hundred rows: ~0.1 ms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from llmrouter.head.members import design

DIMS = 32  # principal components kept
K = 5  # nearest neighbours averaged


@dataclass(frozen=True)
class Familiarity:
    blocks: tuple[str, ...]
    center: np.ndarray  # (D,)
    scale: np.ndarray  # (D,)
    basis: np.ndarray  # (D, P) principal directions
    points: np.ndarray  # (N, P) the training rows, projected
    ref: float  # median k-NN distance of a training row to the others
    alpha: float = 0.0

    @classmethod
    def fit(cls, features: dict[str, np.ndarray], blocks: tuple[str, ...], dims: int = DIMS) -> Familiarity:
        """The projection and reference distance of the rows in `features` (alpha = 0)."""
        x = design(features, blocks)
        center, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
        z = (x - center) / scale
        _, _, vt = np.linalg.svd(z, full_matrices=False)
        basis = vt[: min(dims, len(vt))].T
        points = z @ basis
        d = _pairwise(points, points)
        np.fill_diagonal(d, np.inf)
        ref = float(np.median(_knn(d, K))) or 1.0
        return cls(tuple(blocks), center, scale, basis, points, ref)

    def ratio(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Per row: k-NN distance to the training rows over the training rows' own (~1: familiar)."""
        z = (design(features, self.blocks) - self.center) / self.scale
        return _knn(_pairwise(z @ self.basis, self.points), K) / self.ref

    def factor(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """What the head's temperature is multiplied by, per row (>= 1)."""
        if self.alpha <= 0:
            return np.ones(len(next(iter(features.values()))))
        return stretch(self.ratio(features), self.alpha)

    # --- storing (inside a fitted head's .npz) -------------------------------------------
    def meta(self) -> dict[str, Any]:
        return {"blocks": list(self.blocks), "ref": self.ref, "alpha": self.alpha, "k": K}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"center": self.center, "scale": self.scale, "basis": self.basis, "points": self.points}

    @classmethod
    def restore(cls, meta: dict[str, Any], arr: dict[str, np.ndarray]) -> Familiarity:
        return cls(tuple(meta["blocks"]), arr["center"], arr["scale"], arr["basis"], arr["points"],
                   float(meta["ref"]), float(meta["alpha"]))


def stretch(ratio: np.ndarray, alpha: float) -> np.ndarray:
    """The temperature factor for distance ratios: 1 + alpha * max(0, ratio - 1)."""
    return 1.0 + alpha * np.maximum(0.0, np.asarray(ratio, dtype=np.float64) - 1.0)


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def _knn(d: np.ndarray, k: int) -> np.ndarray:
    k = max(1, min(k, d.shape[1] - 1 if d.shape[1] > 1 else 1))
    return np.partition(d, k - 1, axis=1)[:, :k].mean(axis=1)
