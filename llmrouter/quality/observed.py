"""The rows `tune` fits on: each labelled request observed once by the router model (scores,
hidden states and text, cached on disk), the table's own examples, and source weights."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from llmrouter.config import Config
from llmrouter.deciders.llama import LlamaDecider
from llmrouter.head import stack
from llmrouter.paths import PACKAGE_DIR, user_dir
from llmrouter.quality import evaluate as ev

MIN_EXAMPLES = 8
PACKAGE_EXAMPLES = PACKAGE_DIR / "data" / "examples.jsonl"
Progress = Callable[[str, int], Callable[[], None]]  # (label, total) -> advance-one callback


@dataclass
class Observed:
    """Features of labelled requests under one prompt variant (rows aligned with `y`)."""

    feats: dict[str, np.ndarray]
    y: np.ndarray
    ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    w: np.ndarray = field(default_factory=lambda: np.zeros(0))  # sample weights (empty: all 1)

    def take(self, idx: np.ndarray) -> Observed:
        return Observed({k: v[idx] for k, v in self.feats.items()}, self.y[idx],
                        self.ms[idx] if len(self.ms) else self.ms, self.w[idx] if len(self.w) else self.w)

    @property
    def weights(self) -> np.ndarray:
        return self.w if len(self.w) else np.ones(len(self.y))

    @staticmethod
    def join(a: Observed, b: Observed) -> Observed:
        w = np.concatenate([a.weights, b.weights]) if len(a.w) or len(b.w) else np.zeros(0)
        return Observed({k: np.concatenate([a.feats[k], b.feats[k]]) for k in a.feats},
                        np.concatenate([a.y, b.y]), w=w)


def source_weights(sources: np.ndarray) -> np.ndarray:
    """Weights that give every source the same total (mean 1): a big source of one label
    convention does not outvote the others, nor the package's examples."""
    names, inverse, counts = np.unique(sources, return_inverse=True, return_counts=True)
    w = len(sources) / (len(names) * counts[inverse])
    return w / w.mean()


def observe(decider: LlamaDecider, texts: Sequence[str], progress: Progress | None = None,
            cache_dir: Path | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Route scores, hidden states (final and intermediate layers) and texts for each request (one
    forward pass each; cached on disk)."""
    layers = list(decider.observe_layers)
    key = hashlib.sha256(json.dumps([decider.feature_key, layers, list(texts)]).encode()).hexdigest()[:24]
    path = (cache_dir or user_dir("features")) / f"{key}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files if k != "ms"}, z["ms"]
    step = progress("observing", len(texts)) if progress else (lambda: None)
    obs, ms = [], []
    for t in texts:
        o, v = decider.observe(t)
        obs.append(o)
        ms.append(v.timings.total_ms)
        step()
    feats = stack(obs, decider.table.names)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, ms=np.asarray(ms), **feats)  # type: ignore[arg-type]  # numpy's stub: **kwds as allow_pickle
    except OSError:
        pass
    return feats, np.asarray(ms)


def extra_examples(config: Config) -> tuple[list[str], list[str]]:
    """Training rows besides the labelled data: the table's own route examples, and the packaged
    example set where all its labels are routes of the table."""
    texts, labels = [], []
    for r in config.table.routes:
        texts += list(r.examples)
        labels += [r.name] * len(r.examples)
    if PACKAGE_EXAMPLES.is_file():
        pkg = ev.load_records(PACKAGE_EXAMPLES)
        if {p.label for p in pkg} <= set(config.table.names):
            texts += [p.text for p in pkg]
            labels += [p.label for p in pkg]
    return texts, labels
