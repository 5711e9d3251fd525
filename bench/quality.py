"""Routing quality of the default router model on the shared dev sets; writes bench/results/quality.{json,md}.

    python bench/quality.py [--eval-dir ../shared/eval] [--latency-n 80]

What it measures (default table, default 135M model, this machine):
  - 11-way task routing: zero-shot (the model's own scores), label-prior calibrated, fitted head and
    combined, in stratified 5-fold CV and in CV grouped by source (whole sources held out);
  - the shipped default head (fitted on the package's own examples only) on the whole dev file;
  - easy/hard routing (bench/difficulty_routes.toml): ROC AUC in 5-fold CV;
  - calibration (ECE) and decision latency of scored / fitted / combined on the same requests.
The head's settings (feature blocks, C, threshold) are chosen once by CV grouped by source on the
dev file, as `llmrouter tune` would; the reported folds reuse that choice.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmrouter.quality import evaluate as ev  # noqa: E402
from llmrouter.quality import observed as obs  # noqa: E402
from llmrouter.quality import specs as tuning_specs  # noqa: E402
from llmrouter.quality import tune as tn  # noqa: E402
from llmrouter.quality import shift  # noqa: E402
from llmrouter.config import Config  # noqa: E402
from llmrouter.head.calibration import softmax  # noqa: E402

OUT = ROOT / "bench" / "results"
CACHE = Path("/tmp/llmrouter-bench/features")


def observe_file(config: Config, records: list[ev.Record]) -> tuple[obs.Observed, np.ndarray, str, str]:
    from llmrouter.router import Router

    router = Router(config.with_router(cache=False, mode="scored", head=""))
    d = router.decider
    t0 = time.time()
    feats, ms = obs.observe(d, [r.text for r in records], cache_dir=CACHE)
    ex_t, ex_l = obs.extra_examples(config)
    ex, _ = obs.observe(d, ex_t, cache_dir=CACHE)
    print(f"observed {len(records)} + {len(ex_t)} in {time.time() - t0:.0f} s", flush=True)
    sha, key = d.model_id, d.feature_key
    router.close()
    del router, d
    gc.collect()
    routes = config.table.names
    y = np.array([routes.index(r.label) for r in records])
    return (obs.Observed(feats, y, ms), obs.Observed(ex, np.array([routes.index(x) for x in ex_l])), sha, key)


def cv_metrics(spec: tuning_specs.Spec, data: obs.Observed, extra: obs.Observed, folds, routes, temperature=1.0) -> dict:
    """Metrics of out-of-fold predictions; the head's temperature is fitted inside each fold."""
    k = len(routes)
    proba = np.full((len(data.y), k), np.nan)
    by_head = np.zeros(len(data.y), dtype=bool)
    for tr, te in folds:
        train = obs.Observed.join(data.take(tr), extra)
        head = None
        if spec.mode != "scored":
            t = 1.0
            if spec.mode in ("fitted", "combined"):  # temperature from inner out-of-fold logits
                inner = ev.stratified_folds(data.y[tr], 3, 1)
                fitted = spec.as_("fitted")
                _, logits, used = tn.cross_validate(fitted, data.take(tr), inner, routes, extra)
                from llmrouter.head.calibration import fit_temperature

                t = fit_temperature(logits[used], data.y[tr][used])
            head = tn.fit(spec, train, routes, calibration=shift.Calibration(t, 0.0))
        test = {kk: v[te] for kk, v in data.feats.items()}
        proba[te], by_head[te] = tn.predict(spec, head, test)
    used = np.flatnonzero(~np.isnan(proba[:, 0]))
    p = proba[used]
    m = ev.metrics(data.y[used], p.argmax(1), p.max(1), routes)
    if spec.mode == "combined":
        m["head_share"] = float(by_head[used].mean())
    return m


def latency(config_path: Path, records: list[ev.Record], n: int) -> dict:
    """Decision latency of scored, fitted and combined on the same requests, interleaved."""
    from llmrouter.router import Router

    cfg = Config.load(config_path)
    routers = {}
    base = Router(cfg.with_router(cache=False, mode="scored"))
    for mode in ("scored", "fitted", "combined"):
        r = Router(cfg.with_router(cache=False, mode=mode), decider=base.decider, cache=None)
        routers[mode] = r
    rng = np.random.default_rng(0)
    pick = rng.choice(len(records), size=min(n, len(records)), replace=False)
    out: dict[str, list[float]] = {m: [] for m in routers}
    deciders: dict[str, list[str]] = {m: [] for m in routers}
    for i in pick:
        for mode, r in routers.items():
            base.decider.mode = mode  # one model, three modes: the same warm prefix and requests
            d = r.decide(records[i].text, use_cache=False)
            out[mode].append(d.timings.total_ms)
            deciders[mode].append(d.decider)
    base.decider.mode = "scored"
    base.close()
    res = {m: {"p50": ev.percentile(v, 50), "p95": ev.percentile(v, 95), "mean": float(np.mean(v)),
               "decided_by": {k: deciders[m].count(k) for k in sorted(set(deciders[m]))}}
           for m, v in out.items()}
    for m in ("fitted", "combined"):
        res[m]["p50_vs_scored"] = res[m]["p50"] / res["scored"]["p50"]
        res[m]["mean_vs_scored"] = res[m]["mean"] / res["scored"]["mean"]
    res["n"] = len(pick)
    return res


def shipped_head(data: obs.Observed, routes) -> dict:
    """The packaged default table's own head (fitted only on the package's examples) on the whole
    dev file, which it never saw; computed from the same forward passes as the other modes."""
    from llmrouter.head import FittedHead

    cfg = Config.load()
    head = FittedHead.load(cfg.router.head_path(cfg.path))
    p, by_head = head.proba(data.feats, cfg.router.mode)
    m = ev.metrics(data.y, p.argmax(1), p.max(1), routes)
    m["mode"] = cfg.router.mode
    return m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--eval-dir", default=str(ROOT.parent / "shared" / "eval"))
    ap.add_argument("--latency-n", type=int, default=80)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    eval_dir = Path(args.eval_dir)
    OUT.mkdir(parents=True, exist_ok=True)
    results: dict = {"machine": f"{platform.processor() or platform.machine()}, "
                                f"{__import__('os').cpu_count()} cores, no GPU", "seed": args.seed}

    # --- 11-way task routing ---
    cfg = Config.load()
    routes = cfg.table.names
    task = ev.load_records(eval_dir / "task-routing-dev.jsonl")
    data, extra, sha, key = observe_file(cfg, task)
    sources = np.array([r.source for r in task])
    strat = ev.stratified_folds(data.y, 5, args.seed)
    grouped = ev.source_folds(data.y, sources, seed=args.seed)
    spec, s, temp, table, _ = tn.select(data, grouped, routes, extra, args.seed,
                                     log=lambda x: print(x, flush=True))
    single = tuning_specs.Spec("fitted", tuning_specs.BLOCK_SETS[0], 0.03)  # final layer only: the first release's head
    fitted = spec.as_("fitted") if spec.mode != "scored" else single
    combined = spec if spec.mode == "combined" else fitted.as_("combined", 0.5)
    specs = {"zero-shot (scored)": tuning_specs.Spec("scored"), "calibrated (scored + prior)": tuning_specs.Spec("calibrated"),
             f"fitted {fitted.label}": fitted, f"combined {combined.label}": combined}
    if single != fitted:
        specs[f"ablation: one member, {single.label}"] = single
    results["task"] = {"n": len(task), "chosen_by_grouped_cv": spec.label, "selection": table}
    for split, folds in (("stratified_5fold", strat), ("grouped_by_source", grouped)):
        results["task"][split] = {}
        for name, sp in specs.items():
            m = cv_metrics(sp, data, extra, folds, routes)
            results["task"][split][name] = {k: m[k] for k in ("accuracy", "macro_f1", "ece", "n")} | (
                {"head_share": m["head_share"]} if "head_share" in m else {})
            print(split, name, {k: round(v, 3) for k, v in results["task"][split][name].items()}, flush=True)
    # the stratified figure moves by about a point with the fold assignment: other seeds too
    results["task"]["stratified_seeds"] = {}
    for name, sp in specs.items():
        if sp.mode in ("scored", "calibrated"):
            continue
        accs = [results["task"]["stratified_5fold"][name]["accuracy"]]
        for sd in (1, 2, 3):
            accs.append(cv_metrics(sp, data, extra, ev.stratified_folds(data.y, 5, args.seed + sd), routes)["accuracy"])
        results["task"]["stratified_seeds"][name] = accs
        print("seeds", name, [round(a, 3) for a in accs], flush=True)
    # how much the figures hang on the dense members' C (the choice above is by grouped CV)
    results["task"]["ensemble_C"] = {}
    if fitted.extra or fitted.chars_C:
        for c in tuning_specs.ENSEMBLE_CS:
            sp = replace(fitted, C=c)
            accs = []
            for sd in range(4):
                p, _, u = tn.cross_validate(sp, data, ev.stratified_folds(data.y, 5, args.seed + sd), routes, extra)
                accs.append(float((p[u].argmax(1) == data.y[u]).mean()))
            p, _, u = tn.cross_validate(sp, data, grouped, routes, extra)
            results["task"]["ensemble_C"][str(c)] = {"stratified": accs,
                                                     "grouped": float((p[u].argmax(1) == data.y[u]).mean()),
                                                     "grouped_score": s_ if (s_ := table.get(sp.label)) else None}
            print("ensemble C", c, results["task"]["ensemble_C"][str(c)], flush=True)
    results["task"]["shipped_default"] = {k: v for k, v in shipped_head(data, routes).items()
                                          if k in ("accuracy", "macro_f1", "ece", "n", "mode")}
    print("shipped default", results["task"]["shipped_default"], flush=True)

    # --- latency: a head fitted on all the dev data, used only for timing ---
    tmp = Path("/tmp/llmrouter-bench/tuned")
    head = tn.fit(combined, obs.Observed.join(data, extra), routes, model_sha256=sha, feature_key=key,
                  calibration=temp)
    head.save(tmp / "bench.head.npz")
    (tmp / "bench.toml").write_text(cfg.with_router(head=str(tmp / "bench.head.npz")).to_toml())
    results["latency_ms"] = latency(tmp / "bench.toml", task, args.latency_n)
    print("latency", results["latency_ms"], flush=True)

    # --- easy / hard ---
    dcfg = Config.load(ROOT / "bench" / "difficulty_routes.toml")
    diff = ev.load_records(eval_dir / "difficulty-dev.jsonl")
    ddata, dextra, _, _ = observe_file(dcfg, diff)
    hard = dcfg.table.names.index("hard")
    dfolds = ev.stratified_folds(ddata.y, 5, args.seed)
    results["difficulty"] = {"n": len(diff),
                             "zero_shot_auc": ev.roc_auc(ddata.y == hard, softmax(ddata.feats["logp"])[:, hard])}
    for C, sp in [(C, tuning_specs.Spec("fitted", ("mean", "last", "logp"), C)) for C in (0.01, 0.03, 0.1)] + [
            ("0.01 " + "|".join(fitted.parts), replace(fitted, C=0.01))]:
        p, _, used = tn.cross_validate(sp, ddata, dfolds, dcfg.table.names)
        results["difficulty"][f"fitted_auc_C{C}"] = ev.roc_auc(ddata.y[used] == hard, p[used, hard])
        gp, _, gused = tn.cross_validate(sp, ddata, ev.source_folds(ddata.y, [r.source for r in diff]), dcfg.table.names)
        results["difficulty"][f"fitted_auc_grouped_C{C}"] = ev.roc_auc(ddata.y[gused] == hard, gp[gused, hard])
    print("difficulty", results["difficulty"], flush=True)

    (OUT / "quality.json").write_text(json.dumps(results, indent=1))
    (OUT / "quality.md").write_text(markdown(results))
    print((OUT / "quality.md").read_text())


def markdown(r: dict) -> str:
    t = r["task"]
    lines = ["# Routing quality (default table, SmolLM2-135M Q4_1 router)", "",
             f"Machine: {r['machine']}. Data: ../shared/eval (task-routing-dev n={t['n']}, "
             f"difficulty-dev n={r['difficulty']['n']}). Seed {r['seed']}. "
             f"Head settings chosen by CV grouped by source: `{t['chosen_by_grouped_cv']}`.", "",
             "## 11-way task routing", "",
             "| mode | strat. 5-fold acc | macro-F1 | ECE | by-source acc | macro-F1 | ECE |",
             "|---|---|---|---|---|---|---|"]
    for name, m in t["stratified_5fold"].items():
        g = t["grouped_by_source"][name]
        lines.append(f"| {name} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | {m['ece']:.3f} | "
                     f"{g['accuracy']:.3f} | {g['macro_f1']:.3f} | {g['ece']:.3f} |")
    if t.get("stratified_seeds"):
        lines += ["", f"Stratified 5-fold accuracy with other fold assignments (seeds {r['seed']}..{r['seed'] + 3}):", "",
                  "| mode | per seed | mean |", "|---|---|---|"]
        for name, accs in t["stratified_seeds"].items():
            lines.append(f"| {name} | {' '.join(f'{a:.3f}' for a in accs)} | {np.mean(accs):.3f} |")
    if t.get("ensemble_C"):
        lines += ["", "The same head with other values of C for its dense members (the choice is made by grouped CV, "
                  "on (accuracy + macro-F1) / 2):", "",
                  "| C | strat. acc per seed | mean | by-source acc | grouped-CV score |", "|---|---|---|---|---|"]
        for c, v in t["ensemble_C"].items():
            gs = f"{v['grouped_score']:.4f}" if v.get("grouped_score") else "-"
            lines.append(f"| {c} | {' '.join(f'{a:.3f}' for a in v['stratified'])} | {np.mean(v['stratified']):.3f} | "
                         f"{v['grouped']:.3f} | {gs} |")
    s = t["shipped_default"]
    lines += ["", f"Shipped default table (mode `{s['mode']}`, head fitted only on llmrouter/data/examples.jsonl), "
              f"on the whole dev file: accuracy {s['accuracy']:.3f}, macro-F1 {s['macro_f1']:.3f}, ECE {s['ece']:.3f}.",
              "", "## Easy / hard (bench/difficulty_routes.toml)", "",
              "| mode | ROC AUC (5-fold) | by source |", "|---|---|---|",
              f"| zero-shot P(hard) | {r['difficulty']['zero_shot_auc']:.3f} | - |"]
    for k, v in r["difficulty"].items():
        if k.startswith("fitted_auc_C"):
            c = k.removeprefix("fitted_auc_C")
            lines.append(f"| fitted head, C={c} | {v:.3f} | {r['difficulty']['fitted_auc_grouped_C' + c]:.3f} |")
    lat = r["latency_ms"]
    lines += ["", f"## Decision latency ({lat['n']} requests, the same for each mode, interleaved)", "",
              "| mode | p50 ms | p95 ms | mean ms | mean vs scored | decided by |", "|---|---|---|---|---|---|"]
    for m in ("scored", "fitted", "combined"):
        v = lat[m]
        ratio = f"{v['mean_vs_scored']:.2f}x" if "mean_vs_scored" in v else "1.00x"
        lines.append(f"| {m} | {v['p50']:.0f} | {v['p95']:.0f} | {v['mean']:.0f} | {ratio} | "
                     + ", ".join(f"{k} {n}" for k, n in v["decided_by"].items()) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
