"""How good is a router on labelled data: metrics, honest splits, and a report with plots.

    records (jsonl) -> predictions (route, confidence, latency) -> metrics -> report.md/.json + PNGs

Everything here is plain numpy on arrays of route indices, so `eval`, `tune` and bench/ share it.
Splits: stratified k-fold, and k-fold grouped by source (whole sources held out), so nobody scores
a router on the data it was tuned on.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from llmrouter.config import Config
from llmrouter.errors import ConfigError, RequestError, need
from llmrouter.router import Router
from llmrouter.types import Request

OUTPUT_TOKENS = 256  # assumed answer length for cost estimates (answers are not generated in eval)
CHARS_PER_TOKEN = 4.0


@dataclass(frozen=True)
class Record:
    """One labelled request: its text, the route it should get, where it came from."""

    text: str
    label: str
    source: str = ""


def load_records(path: str | os.PathLike[str]) -> list[Record]:
    """Read {"prompt": ..., "label": ...} lines (chat `messages` accepted; `source` optional)."""
    out = []
    try:
        lines = Path(path).read_text("utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"no data file at {path}", hint="pass a .jsonl file of {\"prompt\", \"label\"} lines") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ConfigError(f"{path}:{n}: not JSON ({exc})") from None
        if not isinstance(row, dict) or not isinstance(row.get("label"), str):
            raise ConfigError(f"{path}:{n}: each line needs a string \"label\" (a route name)")
        value = row.get("messages", row.get("prompt"))
        try:
            text = Request.of(value).text
        except RequestError as exc:
            raise ConfigError(f"{path}:{n}: {exc}") from None
        out.append(Record(text=text, label=row["label"], source=str(row.get("source", ""))))
    if not out:
        raise ConfigError(f"{path} has no records")
    return out


def check_labels(records: Sequence[Record], routes: Sequence[str]) -> None:
    unknown = sorted({r.label for r in records} - set(routes))
    if unknown:
        raise ConfigError(
            f"labels not in the route table: {', '.join(unknown)}",
            hint=f"the table's routes are: {', '.join(routes)}",
        )


# --- metrics -------------------------------------------------------------------------------
def confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """Rows: true route, columns: predicted route."""
    m = np.zeros((k, k), dtype=int)
    np.add.at(m, (np.asarray(y), np.asarray(pred)), 1)
    return m


def per_route(cm: np.ndarray, routes: Sequence[str]) -> dict[str, dict[str, float]]:
    tp = np.diag(cm).astype(float)
    predicted, actual = cm.sum(axis=0), cm.sum(axis=1)
    prec = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    rec = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    f1 = np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(tp), where=(prec + rec) > 0)
    return {r: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]),
                "support": int(actual[i])} for i, r in enumerate(routes)}


def macro_f1(cm: np.ndarray) -> float:
    """Mean F1 over the routes that occur in the data."""
    stats = per_route(cm, [str(i) for i in range(len(cm))])
    f1 = [s["f1"] for s in stats.values() if s["support"] > 0]
    return float(np.mean(f1)) if f1 else 0.0


def reliability(conf: np.ndarray, correct: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Per confidence bin: how many, mean confidence, accuracy."""
    conf, correct = np.asarray(conf, dtype=float), np.asarray(correct, dtype=float)
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        out.append({"lo": b / bins, "hi": (b + 1) / bins, "count": int(m.sum()),
                    "confidence": float(conf[m].mean()) if m.any() else 0.0,
                    "accuracy": float(correct[m].mean()) if m.any() else 0.0})
    return out


def ece(conf: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: |accuracy - confidence| averaged over bins, weighted by size."""
    n = len(conf)
    if n == 0:
        return 0.0
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"])
                     for b in reliability(conf, correct, bins)))


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve for binary labels y (1 = positive), ties counted half."""
    need("scipy", "tune", "ROC AUC")
    from scipy.stats import rankdata

    y, score = np.asarray(y).astype(bool), np.asarray(score, dtype=float)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else 0.0


def route_cost(config: Config, route: str, input_tokens: float, output_tokens: float = OUTPUT_TOKENS) -> float:
    """USD for one request on the route's first target, from the table's prices."""
    targets = config.table[route].targets
    if not targets:
        return 0.0
    return config.targets[targets[0]].cost_usd(input_tokens, output_tokens)


def metrics(
    y: ArrayLike, pred: ArrayLike, conf: ArrayLike, routes: Sequence[str], *,
    latency_ms: Sequence[float] = (), cost_usd: Sequence[float] = (), deciders: Sequence[str] = (),
    bins: int = 10,
) -> dict[str, Any]:
    """Accuracy, macro-F1, per-route P/R/F1, confusion, ECE + reliability, latency, cost per 1k."""
    truth, guess, confidence = np.asarray(y), np.asarray(pred), np.asarray(conf, dtype=float)
    cm = confusion(truth, guess, len(routes))
    correct = np.asarray(truth == guess)
    out: dict[str, Any] = {
        "n": int(len(truth)),
        "accuracy": float(correct.mean()) if len(truth) else 0.0,
        "macro_f1": macro_f1(cm),
        "ece": ece(confidence, correct, bins),
        "per_route": per_route(cm, routes),
        "confusion": cm.tolist(),
        "routes": list(routes),
        "reliability": reliability(confidence, correct, bins),
    }
    if len(latency_ms):
        out["latency_ms"] = {"p50": percentile(latency_ms, 50), "p95": percentile(latency_ms, 95),
                             "mean": float(np.mean(latency_ms))}
        out["latency_samples"] = [round(float(v), 3) for v in latency_ms]
    if len(cost_usd):
        out["cost_per_1k_usd"] = float(np.mean(cost_usd) * 1000)
    if len(deciders):
        out["decided_by"] = dict(Counter(deciders))
        out["stages"] = stages(deciders, correct)
    return out


def stages(deciders: Sequence[str], correct: np.ndarray) -> dict[str, dict[str, float]]:
    """Per decider (cheap stage, model, rule...): the share of requests it decided, and its
    accuracy on them."""
    who = np.asarray(deciders)
    return {str(d): {"share": float((who == d).mean()), "accuracy": float(correct[who == d].mean())}
            for d in dict.fromkeys(deciders)}


# --- splits ---------------------------------------------------------------------------------
def stratified_folds(labels: ArrayLike, k: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train, test) index pairs; each label spread evenly over the folds."""
    rng = np.random.default_rng(seed)
    lab_arr = np.asarray(labels)
    fold = np.empty(len(lab_arr), dtype=int)
    for lab in np.unique(lab_arr):
        idx = np.flatnonzero(lab_arr == lab)
        rng.shuffle(idx)
        start = int(rng.integers(k))  # small classes do not all land in fold 0
        fold[idx] = (np.arange(len(idx)) + start) % k
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]


def source_folds(
    labels: ArrayLike, sources: ArrayLike, k: int | None = None, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Folds that hold out whole sources; a test row is kept only if its label also occurs in
    the training sources (a label no other source covers cannot be learned from them)."""
    lab_arr, src_arr = np.asarray(labels), np.asarray(sources)
    groups = sorted(set(src_arr.tolist()))
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(groups))
    k = len(groups) if k is None else min(k, len(groups))
    out = []
    for f in range(k):
        held = set(order[f::k])
        test = np.isin(src_arr, list(held))
        train = np.flatnonzero(~test)
        covered = set(lab_arr[train].tolist())
        test_idx = np.flatnonzero(test & np.isin(lab_arr, list(covered)))
        if len(train) and len(test_idx):
            out.append((train, test_idx))
    return out


def holdout(labels: ArrayLike, test_fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A stratified (train, test) split."""
    k = max(2, int(round(1 / test_fraction)))
    return stratified_folds(labels, k, seed)[0]


def few_examples(labels: Sequence[str], routes: Sequence[str], minimum: int = 8) -> dict[str, int]:
    """Routes with fewer than `minimum` labelled examples (0 included)."""
    counts = Counter(labels)
    return {r: counts.get(r, 0) for r in routes if counts.get(r, 0) < minimum}


# --- reports --------------------------------------------------------------------------------
def write_report(results: dict[str, dict[str, Any]], out_dir: str | os.PathLike[str], title: str = "Router evaluation") -> list[Path]:
    """report.md, report.json and PNG plots (confusion per variant, reliability, latency)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "report.json", out / "report.md"]
    files[0].write_text(json.dumps(results, indent=1, ensure_ascii=False))
    files[1].write_text(markdown(results, title))
    from llmrouter.quality.plots import plot_all

    files += plot_all(results, out)
    return files


def summary_rows(results: dict[str, dict[str, Any]]) -> list[list[str]]:
    rows = []
    for name, m in results.items():
        lat = m.get("latency_ms", {})
        rows.append([name, f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}", f"{m['ece']:.3f}",
                     f"{lat['p50']:.0f}" if lat else "-", f"{lat['p95']:.0f}" if lat else "-",
                     f"{m['cost_per_1k_usd']:.4f}" if "cost_per_1k_usd" in m else "-", str(m["n"])])
    return rows


def markdown(results: dict[str, dict[str, Any]], title: str) -> str:
    head = ["variant", "accuracy", "macro-F1", "ECE", "p50 ms", "p95 ms", "USD / 1k", "n"]
    lines = [f"# {title}", "", _md_table(head, summary_rows(results)), ""]
    for name, m in results.items():
        lines += [f"## {name}", ""]
        if m.get("stages"):
            rows = [[d, f"{s['share']:.1%}", f"{s['accuracy']:.3f}"] for d, s in m["stages"].items()]
            lines += [_md_table(["decided by", "share", "accuracy there"], rows), ""]
        rows = [[r, f"{s['precision']:.2f}", f"{s['recall']:.2f}", f"{s['f1']:.2f}", str(s["support"])]
                for r, s in m["per_route"].items()]
        lines += [_md_table(["route", "precision", "recall", "F1", "support"], rows), ""]
        routes = m["routes"]
        cm_rows = [[routes[i]] + [str(v) for v in row] for i, row in enumerate(m["confusion"])]
        lines += ["Confusion (rows: true, columns: predicted)", "",
                  _md_table(["true \\ pred"] + [r[:6] for r in routes], cm_rows), ""]
    return "\n".join(lines)


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def split_indices(labels: ArrayLike, sources: Sequence[str], test_fraction: float = 0.25,
                  seed: int = 0, by_source: bool | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """The (train, test) split `tune` fits on and reports on; `eval --holdout` scores the same
    test rows. By source (whole sources held out) when the records name 3+ sources."""
    if by_source is None:
        by_source = len(set(sources) - {""}) >= 3
    if by_source:
        k = max(2, int(round(1 / test_fraction)))
        train, test = source_folds(labels, sources, k=k, seed=seed)[0]
        return train, test, True
    train, test = holdout(labels, test_fraction, seed)
    return train, test, False


def evaluate_router(router: Router, records: Sequence[Record], progress: Any = None) -> dict[str, Any]:
    """Run `router` on every record (decision cache off) and measure it."""
    routes = router.table.names
    check_labels(records, routes)
    step = progress("deciding", len(records)) if progress else (lambda: None)
    pred, conf, ms, cost, by = [], [], [], [], []
    for r in records:
        d = router.decide(r.text, use_cache=False)
        pred.append(routes.index(d.route))
        conf.append(d.confidence if d.confidence is not None else 0.0)
        ms.append(d.timings.total_ms)
        cost.append(route_cost(router.config, d.route, len(r.text) / CHARS_PER_TOKEN))
        by.append(d.decider or d.source)
        step()
    y = [routes.index(r.label) for r in records]
    oracle = [route_cost(router.config, r.label, len(r.text) / CHARS_PER_TOKEN) for r in records]
    out = metrics(y, pred, conf, routes, latency_ms=ms, cost_usd=cost, deciders=by)
    out["oracle_cost_per_1k_usd"] = float(np.mean(oracle) * 1000)
    info = getattr(getattr(router.decider, "head", None), "info", None) or {}
    if info.get("grouped_cv"):  # what tune measured on grouped folds, beside what is measured here
        out["head_cv"] = {**info["grouped_cv"], "grouping": info.get("grouping", "source")}
    return out
