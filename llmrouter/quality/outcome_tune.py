"""`llmrouter tune-outcomes` and `eval` on outcome records: features from the router model, the
out-of-fold curve (quality/outcomes.py), and the fitted router as a head over the table.

The table's routes stand for targets: a route whose first target is T receives the requests the
router sends to T. The head is one dense member whose logits are the predicted score minus
lambda times the target's mean cost (plus the margin for the best single target), sharpened by a
small temperature: the route it prefers is the one of highest utility.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from llmrouter.config import Config
from llmrouter.deciders.llama import LlamaDecider
from llmrouter.errors import ConfigError, need
from llmrouter.head import FittedHead
from llmrouter.head.members import Dense, design, layers_of
from llmrouter.quality import evaluate as ev
from llmrouter.quality import outcomes as oc
from llmrouter.quality.observed import Progress, observe
from llmrouter.quality.tune import write_table
from llmrouter.router import Router

UTILITY_TEMPERATURE = 0.05  # utilities differ by hundredths of a score: sharpen them
MIN_COMPLETE = 20  # records with every target's outcome needed to draw the curve


@dataclass
class OutcomeResult:
    curve: oc.Curve
    head: FittedHead | None
    config: Config
    folds: str  # how the folds were made


def route_of_targets(config: Config, targets: Sequence[str]) -> dict[str, str]:
    """target -> the route whose first target it is; ConfigError naming what is missing."""
    first = {r.targets[0]: r.name for r in config.table.routes if r.targets}
    missing = [t for t in targets if t not in first]
    if missing:
        raise ConfigError(f"no route of the table has {', '.join(missing)} as its first target",
                          hint="add one route per target of the outcome records, e.g. "
                               f"[[routes]] name = \"{missing[0]}\" targets = [\"{missing[0]}\"]")
    return {t: first[t] for t in targets}


def features(config: Config, texts: Sequence[str], progress: Progress | None,
             cache_dir: Path | None = None) -> tuple[dict[str, np.ndarray], str, str]:
    router = Router(config.with_router(cache=False, mode="scored", head=""))
    try:
        d = router.decider
        if not isinstance(d, LlamaDecider):
            raise ConfigError("outcomes tuning reads the in-process router model's states",
                              hint="use a table without [router.remote]")
        feats, _ = observe(d, texts, progress, cache_dir)
        return feats, d.model_id, d.feature_key
    finally:
        router.close()
        del router
        gc.collect()


def blocks_of(feats: dict[str, np.ndarray]) -> tuple[str, ...]:
    """The deepest intermediate layer's states (the pass can stop there), else the final layer's."""
    layers = layers_of(tuple(feats))
    return (f"mean@{layers[-1]}", f"last@{layers[-1]}") if layers else ("mean", "last")


def folds_for(y_like: np.ndarray, sources: Sequence[str], k: int, seed: int) -> tuple[list[Any], str]:
    if len(set(sources) - {""}) >= 3:
        return ev.source_folds(np.zeros(len(sources), dtype=int), list(sources), k=k, seed=seed), "source"
    return ev.stratified_folds(y_like, k, seed), "stratified"


def learn(config: Config, records: Sequence[oc.OutcomeRecord], *, max_cost: float | None = None,
          min_quality: float | None = None, folds: int = 5, seed: int = 0, fit_head: bool = True,
          progress: Progress | None = None, log: Callable[[str], None] = print,
          cache_dir: Path | None = None) -> OutcomeResult:
    """Cross-validate the outcomes router, choose its operating point, and (fit_head) fit it on all."""
    need("sklearn", "tune", "learning from outcomes")
    targets, q, c = oc.matrices(records)
    if fit_head:
        route_of_targets(config, targets)  # before the forward passes: say what the table lacks
    feats, sha, fkey = features(config, [r.text for r in records], progress, cache_dir)
    blocks = blocks_of(feats)
    x = design(feats, blocks)
    full = oc.complete_rows(q)
    if len(full) < MIN_COMPLETE:
        raise ConfigError(f"only {len(full)} records have outcomes for every target ({', '.join(targets)}); "
                          f"the curve and the choice of lambda need {MIN_COMPLETE}+",
                          hint="score a sample of requests on every target offline (see README: learning from outcomes)")
    best_row = np.nan_to_num(q, nan=-1.0).argmax(1)  # for stratifying: which target did best
    cv, how = folds_for(best_row, [r.source for r in records], folds, seed)
    log(f"{len(records)} records ({len(full)} with every target), targets {', '.join(targets)}; "
        f"{len(cv)} folds ({how}); features {'+'.join(blocks)}")
    pred = oc.out_of_fold_scores(x, q, cv)
    used = np.intersect1d(full, np.flatnonzero(~np.isnan(pred[:, 0])))
    curve = oc.curve(pred[used], q[used], c[used], targets, max_cost, min_quality)
    head = None
    if fit_head:
        head = utility_head(config, oc.ScoreModel.fit(x, q), curve, targets, blocks, np.nanmean(c, 0), sha, fkey)
    return OutcomeResult(curve, head, config.with_router(mode="fitted"), how)


def utility_head(config: Config, model: oc.ScoreModel, curve: oc.Curve, targets: Sequence[str],
                 blocks: tuple[str, ...], mean_cost: np.ndarray, sha: str, fkey: str) -> FittedHead:
    """The chosen operating point as a FittedHead over the table's routes."""
    routes = config.table.names
    to_route = route_of_targets(config, targets)
    point = curve.chosen
    assert point is not None
    base = targets.index(curve.summary["best_single"]["target"])
    margin = point.margin if np.isfinite(point.margin) else 1e3  # inf: always the best single target
    k, d = len(routes), model.coef.shape[1]
    coef, intercept = np.zeros((k, d)), np.full(k, -1e3)  # routes of no target: never chosen
    for i, t in enumerate(targets):
        j = routes.index(to_route[t])
        coef[j] = model.coef[i]
        intercept[j] = model.intercept[i] - point.lam * mean_cost[i] + (margin if i == base else 0.0)
    member = Dense(tuple(blocks), model.center, model.scale, coef, intercept, 1.0, 0.0)
    head = FittedHead(routes=tuple(routes), model_sha256=sha, feature_key=fkey, model_bias=np.zeros(k),
                      members=(member,), temperature=UTILITY_TEMPERATURE)
    return replace(head, info={"kind": "outcomes", "targets": list(targets), "lambda": point.lam,
                               "margin": point.margin, "cv": curve.summary})


def write(result: OutcomeResult, out: str | Path) -> list[Path]:
    """The table (mode fitted) and its utility head beside it."""
    return write_table(result.config, result.head, out)


def report(result: OutcomeResult, out_dir: str | Path, title: str) -> list[Path]:
    """report.md, report.json and curve.png for outcome records."""
    import json

    from llmrouter.quality.plots import plot_outcome_curve

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cv = result.curve
    data = {"summary": cv.summary, "folds": result.folds, "singles": cv.singles, "oracle": cv.oracle,
            "router": [vars(p) for p in cv.router]}
    files = [out / "report.json", out / "report.md", out / "curve.png"]
    files[0].write_text(json.dumps(data, indent=1))
    files[1].write_text(markdown(cv, title, result.folds))
    plot_outcome_curve(cv, files[2], title)
    return files


def markdown(cv: oc.Curve, title: str, folds: str) -> str:
    s = cv.summary
    a = s["area"]
    rows = [f"| always-cheapest | {s['cheapest']['cost'] * 1000:.4f} | {s['cheapest']['quality']:.3f} |",
            f"| best single ({s['best_single']['target']}) | {s['best_single']['cost'] * 1000:.4f} | "
            f"{s['best_single']['quality']:.3f} |",
            f"| oracle | {s['oracle_best']['cost'] * 1000:.4f} | {s['oracle_best']['quality']:.3f} |"]
    if s["chosen"]:
        ch = s["chosen"]
        rows.append(f"| router, chosen (lambda {ch['lambda']:g}, margin {ch['margin']:g}) | "
                    f"{ch['cost'] * 1000:.4f} | {ch['quality']:.3f} |")
    reach = s["cost_to_95pct_best"]
    gap = s["chosen_vs_best_single"]
    return "\n".join([
        f"# {title}", "", f"Out-of-fold operating points ({folds} folds). Scores and costs are the recorded outcomes.", "",
        "| policy | USD / 1k | mean score |", "|---|---:|---:|", *rows, "",
        "Area: mean best score reachable at a cost between the cheapest and the dearest single target.", "",
        "| router | random | best single | oracle | always-cheapest | APGR (router) |", "|---:|---:|---:|---:|---:|---:|",
        f"| {a['router']:.3f} | {a['random']:.3f} | {a['best_single']:.3f} | {a['oracle']:.3f} | {a['cheapest']:.3f} | {s['apgr']:.3f} |",
        "",
        f"Cost to reach 95% of the best single target's score: "
        f"{'not reached' if reach is None else f'{reach * 1000:.4f} USD / 1k'}.",
        f"Chosen point vs the best single target: {gap['gain']:+.4f} score (standard error {gap['se']:.4f}).",
        "", "![quality vs cost](curve.png)", ""])
