"""Calibration under shift: the default head before and after grouped-fold calibration and the
out-of-distribution signal; writes bench/results/calibration.{json,md}.

    python bench/calibration.py [--eval-dir ../shared/eval] [--ship]

1. The shipped head's spec, fitted on the package's own examples only (as shipped), calibrated
   three ways: folds stratified (as before), folds grouped by cluster, and grouped by cluster with
   the familiarity (OOD) factor; each scored on the whole dev file (sources it never saw), with
   its cascade. `--ship` only refits the last one and writes it as llmrouter/default_routes.head.npz.
2. Grouped-by-source CV over the dev file (+ the package examples in every training fold), as
   `tune` runs it: the spec refitted per fold, calibration fitted on the other folds
   (cross-fitted ECE), against the shipped head on the same held-out rows.
3. Grouped-by-cluster CV over the package's own examples (they name no sources).
Features come from the feature cache `tune` and `eval` use (~/.cache/llmrouter/features).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmrouter.config import Config  # noqa: E402
from llmrouter.head import FittedHead  # noqa: E402
from llmrouter.quality import cascade, shift  # noqa: E402
from llmrouter.quality import evaluate as ev  # noqa: E402
from llmrouter.quality import observed as obs  # noqa: E402
from llmrouter.quality import specs as tuning_specs  # noqa: E402
from llmrouter.quality import tune as tn  # noqa: E402
from llmrouter.router import Router  # noqa: E402

OUT = ROOT / "bench" / "results"


def observed(cfg: Config, records: list[ev.Record]) -> tuple[obs.Observed, str, str]:
    router = Router(cfg.with_router(cache=False, mode="scored", head=""))
    feats, ms = obs.observe(router.decider, [r.text for r in records])
    sha, key = router.decider.model_id, router.decider.feature_key
    router.close()
    routes = cfg.table.names
    return obs.Observed(feats, np.array([routes.index(r.label) for r in records]), ms), sha, key


def with_cascade(head: FittedHead, rows: obs.Observed, routes, mode: str = "fitted") -> dict:
    p, _ = head.proba(rows.feats, mode)
    m = tn.held_out_cascade(rows, p, head, routes, tuning_specs.Spec(mode))
    return {k: round(m[k], 4) if isinstance(m[k], float) else m[k] for k in ("accuracy", "macro_f1", "ece", "n")} | (
        {"cheap_share": round(m["stages"]["share"], 4)} if "stages" in m else {})


def head_alone(head: FittedHead, rows: obs.Observed, routes) -> dict:
    return tn._rounded(tn.head_metrics(head, "fitted", rows, routes))


def refit(spec: tuning_specs.Spec, train: obs.Observed, extra: obs.Observed, folds, routes, sha, key, ood: bool, seed=0):
    """The shipped head's spec on `train` + `extra`, calibrated on `folds`, with its cascade."""
    cal, logits, ratio, used = tn.calibrate(spec, train, folds, routes, extra, seed)
    if not ood:
        cal = shift.Calibration(shift.fit(logits[used], train.y[used], None).temperature, 0.0)
    p = shift.apply(logits, ratio if ood else None, cal)
    choice = tn.choose_cascade(train, folds, p, routes, extra, seed, print)
    if ood and choice is not None and 0 < choice.share < 1:  # as tune does: the model stage's own rows
        cal = tn.model_stage_calibration(spec, train, folds, routes, extra, seed, choice, print)
    rows = obs.Observed.join(train, extra)
    head = tn.fit(spec, rows, routes, model_sha256=sha, feature_key=key, seed=seed, calibration=cal)
    if choice is not None:
        head = replace(head, cheap=cascade.fit_stage(rows.feats["text"], rows.y, routes, choice, seed))
    grouped = shift.grouped_metrics(train.y, shift.cross_fitted(logits, train.y, ratio if ood else None, folds), routes)
    return head, cal, grouped


def source_cv(spec, dev, extra, sources, shipped, routes, seed=0) -> dict:
    """Grouped-by-source CV over the dev file: the new calibration vs the shipped head."""
    folds = ev.source_folds(dev.y, sources, k=5, seed=seed)
    out = {}
    for ood in (False, True):
        cal, logits, ratio, used = tn.calibrate(spec, dev, folds, routes, extra, seed)
        r = ratio if ood else None
        out["spec refit per fold, " + ("grouped temperature + OOD" if ood else "grouped temperature")] = \
            shift.grouped_metrics(dev.y, shift.cross_fitted(logits, dev.y, r, folds), routes)
    rows = np.unique(np.concatenate([te for _, te in folds]))
    out["shipped head (before)"] = head_alone(shipped, dev.take(rows), routes)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--eval-dir", default=str(ROOT.parent / "shared" / "eval"))
    ap.add_argument("--ship", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    cfg = Config.load()
    routes = cfg.table.names
    shipped = FittedHead.load(cfg.router.head_path(cfg.path))
    spec = tuning_specs.Spec("fitted", ("mean@16", "last@16"), 0.02, extra=(("mean@24", "last@24"),), chars_C=tuning_specs.CHARS_C)
    pkg = ev.load_records(obs.PACKAGE_EXAMPLES)
    ex_t, ex_l = obs.extra_examples(cfg)
    seen = {r.text for r in pkg}
    table_rows = [ev.Record(t, lab) for t, lab in zip(ex_t, ex_l) if t not in seen]
    examples, sha, key = observed(cfg, pkg)
    table_ex, _, _ = observed(cfg, table_rows)
    dev_records = ev.load_records(Path(args.eval_dir) / "task-routing-dev.jsonl")
    dev, _, _ = observed(cfg, dev_records)
    sources = np.array([r.source for r in dev_records])
    res: dict = {"machine": f"{platform.machine()}, 2-core AMD EPYC, no GPU", "spec": spec.label,
                 "dev_n": len(dev.y), "examples_n": len(examples.y)}

    if args.ship:  # only the shipped variant: cluster-grouped calibration (+ OOD where it helps)
        clus = shift.cluster_folds(examples.y, examples.feats["mean@24"], 5, 0)
        head, cal, grouped = refit(spec, examples, table_ex, clus, routes, sha, key, True)
        info = {**shipped.info, "grouping": "cluster", "alpha": cal.alpha, "grouped_cv": grouped,
                "cheap_threshold": head.cheap.threshold if head.cheap else None}
        replace(head, info=info).save(ROOT / "llmrouter" / "default_routes.head.npz")
        print("shipped", cal, grouped, with_cascade(head, dev, routes), flush=True)
        return
    res["dev_whole_file"] = {"shipped head (before), with its cascade": with_cascade(shipped, dev, routes),
                             "shipped head alone": head_alone(shipped, dev, routes)}
    strat = ev.stratified_folds(examples.y, 5, 0)
    clus = shift.cluster_folds(examples.y, examples.feats["mean@24"], 5, 0)
    res["examples_cv"] = {}
    for name, folds, ood in (("stratified temperature", strat, False), ("cluster temperature", clus, False),
                             ("cluster temperature + OOD", clus, True)):
        head, cal, grouped = refit(spec, examples, table_ex, folds, routes, sha, key, ood)
        res["dev_whole_file"][f"refit, {name} (T={cal.temperature:.3f}, alpha={cal.alpha})"] = with_cascade(head, dev, routes)
        res["dev_whole_file"][f"refit, {name}: head alone"] = head_alone(head, dev, routes)
        res["examples_cv"][name] = grouped
        print(name, res["dev_whole_file"], flush=True)
    res["source_cv_dev"] = source_cv(spec, dev, obs.Observed.join(examples, table_ex), sources, shipped, routes)
    print(json.dumps(res["source_cv_dev"], indent=1), flush=True)
    res["seconds"] = round(time.time() - t0)
    (OUT / "calibration.json").write_text(json.dumps(res, indent=1))
    (OUT / "calibration.md").write_text(markdown(res))


def markdown(res: dict) -> str:
    def table(rows: dict) -> list[str]:
        out = ["| variant | accuracy | macro-F1 | ECE | n |", "|---|---:|---:|---:|---:|"]
        out += [f"| {k} | {v['accuracy']:.3f} | {v['macro_f1']:.3f} | {v['ece']:.3f} | {v['n']} |" for k, v in rows.items()]
        return out

    return "\n".join([
        "# Calibration under shift", "",
        f"`python bench/calibration.py`; {res['machine']}; head spec `{res['spec']}` (the shipped one), "
        f"fitted on the package's {res['examples_n']} examples only.", "",
        f"## The whole dev file ({res['dev_n']} prompts from sources the head never saw)", "",
        *table(res["dev_whole_file"]), "",
        "## Grouped-by-source CV over the dev file (package examples in every training fold; ECE cross-fitted)", "",
        *table(res["source_cv_dev"]), "",
        "## CV over the package's own examples (no sources: folds grouped by cluster within routes; ECE cross-fitted)", "",
        *table(res["examples_cv"]), ""])


if __name__ == "__main__":
    main()
