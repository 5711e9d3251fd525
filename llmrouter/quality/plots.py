"""The PNG plots of an `eval` report: a confusion matrix per variant, reliability, latency."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from llmrouter.errors import need


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60]


def plot_all(results: dict[str, dict[str, Any]], out: Path) -> list[Path]:
    need("matplotlib", "tune", "eval's plots")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for name, m in results.items():
        cm = np.asarray(m["confusion"])
        fig, ax = plt.subplots(figsize=(7, 6))
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(len(m["routes"])), m["routes"], rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(m["routes"])), m["routes"], fontsize=8)
        for (i, j), v in np.ndenumerate(cm):
            if v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                        color="white" if v > cm.max() / 2 else "black")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{name}: accuracy {m['accuracy']:.3f}")
        files.append(_save(plt, fig, out / f"confusion_{_slug(name)}.png"))
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot([0, 1], [0, 1], "k--", lw=1)
    for name, m in results.items():
        pts = [(b["confidence"], b["accuracy"]) for b in m["reliability"] if b["count"]]
        if pts:
            ax.plot(*zip(*pts), "o-", label=f"{name} (ECE {m['ece']:.3f})")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability")
    ax.legend(fontsize=8)
    files.append(_save(plt, fig, out / "reliability.png"))
    with_lat = {n: m["latency_samples"] for n, m in results.items() if m.get("latency_samples")}
    if with_lat:
        fig, ax = plt.subplots(figsize=(7, 4))
        for name, vals in with_lat.items():
            ax.hist(vals, bins=30, alpha=0.5, label=name)
        ax.set_xlabel("decision latency (ms)")
        ax.set_ylabel("requests")
        ax.legend(fontsize=8)
        files.append(_save(plt, fig, out / "latency.png"))
    return files


def _save(plt: Any, fig: Any, path: Path) -> Path:
    """Lay out, write and close one figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path




def plot_outcome_curve(curve: Any, path: Path, title: str = "Quality vs cost") -> Path:
    """The outcomes router's operating points against the baselines (quality/outcomes.py)."""
    need("matplotlib", "tune", "eval's plots")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llmrouter.quality.outcomes import random_points

    fig, ax = plt.subplots(figsize=(7, 5))
    pts = sorted((p.cost * 1000, p.quality) for p in curve.router)
    ax.scatter([c for c, _ in pts], [q for _, q in pts], s=12, color="tab:blue",
               label="router (out-of-fold), each lambda and margin")
    ora = sorted((c * 1000, q) for c, q in curve.oracle)
    ax.plot(*zip(*ora), "--", color="tab:green", marker=".", label="oracle")
    rnd = sorted((c * 1000, q) for c, q in random_points(curve.singles))
    ax.plot(*zip(*rnd), ":", color="gray", label="random mix")
    for name, (c, q) in curve.singles.items():
        ax.scatter([c * 1000], [q], marker="s", s=50, color="black")
        ax.annotate(name, (c * 1000, q), textcoords="offset points", xytext=(5, -10), fontsize=8)
    if curve.chosen is not None:
        ax.scatter([curve.chosen.cost * 1000], [curve.chosen.quality], marker="*", s=200, color="tab:red",
                   label="chosen")
    ax.set_xlabel("USD per 1k requests")
    ax.set_ylabel("mean score")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
