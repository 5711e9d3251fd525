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
from llmrouter.head.calibration import softmax  # noqa: E402
from llmrouter.head.familiarity import Familiarity, stretch  # noqa: E402
from llmrouter.head.members import TEXT, char_wb_ngrams  # noqa: E402
from llmrouter.head.support import Support  # noqa: E402
from llmrouter.quality import cascade, probes, shift  # noqa: E402
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
    head = head.with_support(Support.fit(texts(rows)))
    grouped = shift.grouped_metrics(train.y, shift.cross_fitted(logits, train.y, ratio if ood else None, folds), routes)
    return head, cal, grouped, p


def texts(rows: obs.Observed) -> list[str]:
    return [str(t) for t in rows.feats[TEXT]]


def softened_cascade_cv(train: obs.Observed, extra: obs.Observed, folds, model_p: np.ndarray, routes, seed=0) -> dict:
    """The cascade's cross-fitted probabilities over grouped folds (as tune reports them), then
    each fold's rows softened beyond a support fitted on the other folds' rows (+ `extra`): the
    hinge scored on rows it was not fitted on. Before and after, with the ROC AUC of right vs wrong."""
    logits = cascade.out_of_fold_logits(train.feats, train.y, len(routes), folds, (extra.feats, extra.y), seed)
    before = cascade.cross_fitted(train.y, logits, model_p, folds)
    after = before.copy()
    beyond = np.zeros(len(train.y), dtype=bool)
    for tr, te in folds:
        support = Support.fit(texts(train.take(tr)) + texts(extra))
        after[te] = support.soften(before[te], texts(train.take(te)))
        beyond[te] = support.weight(texts(train.take(te))) > 0
    out = {}
    for name, p in (("before", before), ("after", after)):
        used = np.flatnonzero(~np.isnan(p[:, 0]))
        m = shift.grouped_metrics(train.y, p, routes)
        out[name] = m | {"auc": round(ev.roc_auc(p[used].argmax(1) == train.y[used], p[used].max(1)), 4)}
    out["beyond_support"] = int(beyond.sum())
    return out


def source_cv(spec, dev, extra, sources, heads: dict, routes, seed=0) -> dict:
    """Grouped-by-source CV over the dev file: the calibration refitted per fold vs fixed heads."""
    folds = ev.source_folds(dev.y, sources, k=5, seed=seed)
    out = {}
    _, logits, ratio, _ = tn.calibrate(spec, dev, folds, routes, extra, seed)  # one pass for both
    for ood in (False, True):
        out["spec refit per fold, " + ("grouped temperature + OOD" if ood else "grouped temperature")] = \
            shift.grouped_metrics(dev.y, shift.cross_fitted(logits, dev.y, ratio if ood else None, folds), routes)
    rows = np.unique(np.concatenate([te for _, te in folds]))
    for name, head in heads.items():
        out[f"{name}: head alone"] = head_alone(head, dev.take(rows), routes)
        out[f"{name}, with its cascade"] = with_cascade(head, dev.take(rows), routes)
    return out


def ood_check(head: FittedHead, train: obs.Observed, dev: obs.Observed, far: obs.Observed, routes) -> dict:
    """Is the familiarity distance an out-of-distribution signal for this head? Per alpha: mean
    confidence on the dev prompts and on the far probes, ROC AUC of confidence for right vs wrong
    on dev, and the dev ECE with the cascade. Plus the share of a request's character n-grams the
    cheap stage knows (coverage), a text-only distance."""
    fam = Familiarity.fit(train.feats, head.familiarity.blocks if head.familiarity else ("mean@16", "last@16"))
    rd, rf = fam.ratio(dev.feats), fam.ratio(far.feats)
    zd, zf = head.head_logits(dev.feats), head.head_logits(far.feats)
    cp, cu = head.cheap.read([str(t) for t in dev.feats["text"]])
    out: dict = {"ratio_median": {"dev": round(float(np.median(rd)), 3), "far": round(float(np.median(rf)), 3)},
                 "cheap_decides_far": round(float(head.cheap.read([str(t) for t in far.feats["text"]])[1].mean()), 3),
                 "alphas": {}}
    kinds = np.array([k for k, _ in probes.far_probes()])
    for a in shift.ALPHAS:
        pd = softmax(zd / (head.temperature * stretch(rd, a))[:, None])
        pf = softmax(zf / (head.temperature * stretch(rf, a))[:, None])
        casc = np.where(cu[:, None], cp, pd)
        m = ev.metrics(dev.y, casc.argmax(1), casc.max(1), routes)
        out["alphas"][str(a)] = {
            "dev_conf": round(float(pd.max(1).mean()), 3), "far_conf": round(float(pf.max(1).mean()), 3),
            "auc_right_wrong": round(ev.roc_auc(pd.argmax(1) == dev.y, pd.max(1)), 3),
            "dev_cascade_ece": round(m["ece"], 4), "dev_cascade_accuracy": round(m["accuracy"], 4),
            "far_conf_by_kind": {k: round(float(pf[kinds == k].max(1).mean()), 2) for k in probes.KINDS}}
    known = head.cheap.member._index
    cov = [np.array([np.mean([g in known for g in char_wb_ngrams(str(t))] or [0.0]) for t in rows.feats["text"]])
           for rows in (dev, far)]
    ok = head.head_proba(dev.feats).argmax(1) == dev.y
    out["coverage"] = {"dev_median": round(float(np.median(cov[0])), 3), "dev_q05": round(float(np.quantile(cov[0], 0.05)), 3),
                       "far_by_kind": {k: round(float(cov[1][kinds == k].mean()), 2) for k in probes.KINDS},
                       "auc_right_wrong_dev": round(ev.roc_auc(ok, cov[0]), 3)}
    return out


def cascade_proba(head: FittedHead, rows: obs.Observed) -> np.ndarray:
    """What the router reports per row: the cheap stage where it decides alone, else the head."""
    cp, use = head.cheap.read(texts(rows)) if head.cheap is not None else (None, np.zeros(len(rows.y), bool))
    p, _ = head.proba(rows.feats, "fitted")
    return np.where(use[:, None], cp, p) if cp is not None else p


def scored(y: np.ndarray, p: np.ndarray, routes) -> dict:
    m = ev.metrics(y, p.argmax(1), p.max(1), routes)
    return {"accuracy": round(m["accuracy"], 4), "ece": round(m["ece"], 4), "n": int(len(y)),
            "auc": round(ev.roc_auc(p.argmax(1) == y, p.max(1)), 4), "mean_conf": round(float(p.max(1).mean()), 4)}


def escalation_thresholds() -> dict[str, float]:
    """min_confidence of examples/escalation.toml (balanced surfaces) and the quality surfaces'
    (halfway to 1, policy/tiers.py): the only example tables that escalate on confidence."""
    import tomllib

    low = float(tomllib.loads((ROOT / "examples" / "escalation.toml").read_text())["escalation"]["min_confidence"])
    return {"balanced": low, "quality": (low + 1) / 2}


def support_check(base: FittedHead, support: Support, dev: obs.Observed, sources: np.ndarray,
                  far: obs.Observed, routes) -> dict:
    """The hinge beyond the fit rows' support (head/support.py): the same head without and with it,
    on the far probes (per kind; share that would escalate), the dev file (whole, the rows of the
    grouped-by-source folds, the Chinese prompts, the rows beyond the support) and its cost."""
    after = base.with_support(support)
    kinds = np.array([k for k, _ in probes.far_probes()])
    pb, pa = cascade_proba(base, far), cascade_proba(after, far)
    thresholds = escalation_thresholds()
    out: dict = {"edges": dict(zip(support_names(), np.round(support.edge, 3).tolist())),
                 "medians": dict(zip(support_names(), np.round(support.median, 3).tolist())),
                 "thresholds": thresholds, "far": {}, "dev": {}}
    for k in probes.KINDS:
        m = kinds == k
        out["far"][k] = {"before": round(float(pb[m].max(1).mean()), 3), "after": round(float(pa[m].max(1).mean()), 3),
                         "after_max": round(float(pa[m].max(1).max()), 3),
                         **{f"escalates_{n}": round(float((pa[m].max(1) < t).mean()), 2) for n, t in thresholds.items()},
                         **{f"escalated_before_{n}": round(float((pb[m].max(1) < t).mean()), 2) for n, t in thresholds.items()}}
    db, da = cascade_proba(base, dev), cascade_proba(after, dev)
    folds = ev.source_folds(dev.y, sources, k=5, seed=0)
    cv_rows = np.unique(np.concatenate([te for _, te in folds]))
    beyond = support.weight(texts(dev)) > 0
    for name, idx in (("whole file", np.arange(len(dev.y))), ("grouped-by-source CV rows", cv_rows),
                      ("Chinese (belle_eval_zh)", np.flatnonzero(sources == "belle_eval_zh")),
                      ("beyond the support", np.flatnonzero(beyond))):
        out["dev"][name] = {"before": scored(dev.y[idx], db[idx], routes), "after": scored(dev.y[idx], da[idx], routes)}
    out["beyond_by_source"] = {str(s): int(n) for s, n in zip(*np.unique(sources[beyond], return_counts=True))}
    out["argmax_unchanged"] = bool((db.argmax(1) == da.argmax(1)).all() and (pb.argmax(1) == pa.argmax(1)).all())
    out["added_ms"] = added_latency(base, after, dev)
    return out


def support_names() -> tuple[str, ...]:
    from llmrouter.head.textstats import NAMES

    return NAMES


def added_latency(base: FittedHead, after: FittedHead, rows: obs.Observed, repeats: int = 5) -> dict:
    """Per request, what the hinge adds to a decision: the cheap stage's read and the head's
    probabilities of one request, with it minus without it (best of `repeats`), p50 and p95 in ms.
    Both stages measure the text, as the router does for a request the model decides."""
    def cost(head: FittedHead, i: int) -> float:
        one = rows.take(np.array([i]))
        best = np.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            cascade_proba(head, one)
            best = min(best, time.perf_counter() - t0)
        return best

    added = np.array([cost(after, i) - cost(base, i) for i in range(len(rows.y))]) * 1e3
    return {"p50": round(float(np.median(added)), 3), "p95": round(float(np.quantile(added, 0.95)), 3), "n": len(added)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--eval-dir", default=str(ROOT.parent / "shared" / "eval"))
    ap.add_argument("--ship", action="store_true")
    ap.add_argument("--before", help="a head file to compare with as 'before' (e.g. the one main ships)")
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

    far, _, _ = observed(cfg, [ev.Record(t, routes[0]) for _, t in probes.far_probes()])
    fit_rows = obs.Observed.join(examples, table_ex)
    res["ood"] = ood_check(shipped.with_support(None), fit_rows, dev, far, routes)
    print(json.dumps(res["ood"]), flush=True)
    support = shipped.support or Support.fit(texts(fit_rows))
    res["support"] = support_check(shipped.with_support(None), support, dev, sources, far, routes)
    print(json.dumps(res["support"]), flush=True)
    if args.ship:  # only the shipped variant: cluster-grouped calibration (+ OOD where it helps)
        clus = shift.cluster_folds(examples.y, examples.feats["mean@24"], 5, 0)
        head, cal, grouped, _ = refit(spec, examples, table_ex, clus, routes, sha, key, True)
        info = {**shipped.info, "grouping": "cluster", "alpha": cal.alpha, "grouped_cv": grouped,
                "cheap_threshold": head.cheap.threshold if head.cheap else None}
        replace(head, info=info).save(ROOT / "llmrouter" / "default_routes.head.npz")
        print("shipped", cal, grouped, with_cascade(head, dev, routes), flush=True)
        return
    heads = {"shipped head": shipped}
    if args.before:
        heads = {f"before ({Path(args.before).name})": FittedHead.load(args.before), "after (shipped)": shipped}
    res["dev_whole_file"] = {}
    for name, head in heads.items():
        res["dev_whole_file"][f"{name}, with its cascade"] = with_cascade(head, dev, routes)
        res["dev_whole_file"][f"{name}: head alone"] = head_alone(head, dev, routes)
    strat = ev.stratified_folds(examples.y, 5, 0)
    clus = shift.cluster_folds(examples.y, examples.feats["mean@24"], 5, 0)
    res["examples_cv"], res["support_examples_cv"] = {}, {}
    for name, folds, ood in (("stratified temperature", strat, False), ("cluster temperature + OOD", clus, True)):
        head, cal, grouped, oof = refit(spec, examples, table_ex, folds, routes, sha, key, ood)
        res["support_examples_cv"][name] = softened_cascade_cv(examples, table_ex, folds, oof, routes)
        res["dev_whole_file"][f"refit, {name} (T={cal.temperature:.3f}, alpha={cal.alpha})"] = with_cascade(head, dev, routes)
        res["dev_whole_file"][f"refit, {name}: head alone"] = head_alone(head, dev, routes)
        res["examples_cv"][name] = grouped
        if head.cheap is not None and head.cheap.info.get("grouped_cv"):
            res["examples_cv"][f"{name}, with its cascade"] = head.cheap.info["grouped_cv"]
        print(name, res["dev_whole_file"], flush=True)
    res["source_cv_dev"] = source_cv(spec, dev, obs.Observed.join(examples, table_ex), sources, heads, routes)
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
        *table(res["examples_cv"]), "",
        "The cascade rows: each fold scored with a threshold and both cheap-stage temperatures chosen on the",
        "other folds; the model stage there is calibrated on all the folds' rows (one temperature).", "",
        *ood_markdown(res["ood"]), *support_markdown(res["support"], res["support_examples_cv"])])


def support_markdown(sup: dict, examples_cv: dict) -> list[str]:
    def row(name: str, v: dict) -> str:
        b, a = v["before"], v["after"]
        return (f"| {name} | {b['n']} | {b['accuracy']:.3f} / {a['accuracy']:.3f} | {b['ece']:.3f} / {a['ece']:.3f} "
                f"| {b['auc']:.3f} / {a['auc']:.3f} | {b['mean_conf']:.3f} / {a['mean_conf']:.3f} |")

    t = sup["thresholds"]
    far = ["| probe kind | mean confidence before | after | highest after | "
           f"would escalate at {t['balanced']} (before / after) | at {t['quality']} (before / after) |",
           "|---|---:|---:|---:|---:|---:|"]
    far += [f"| {k} | {v['before']:.3f} | {v['after']:.3f} | {v['after_max']:.3f} | "
            f"{v['escalated_before_balanced']:.0%} / {v['escalates_balanced']:.0%} | "
            f"{v['escalated_before_quality']:.0%} / {v['escalates_quality']:.0%} |" for k, v in sup["far"].items()]
    dev = ["| dev rows (with the cascade) | n | accuracy before / after | ECE before / after "
           "| ROC AUC right vs wrong before / after | mean confidence before / after |", "|---|---:|---:|---:|---:|---:|"]
    dev += [row(k, v) for k, v in sup["dev"].items()]
    pkg = ["| package cluster-CV (cascade, cross-fitted) | n | ECE before / after | ROC AUC before / after "
           "| rows beyond their fold's support |", "|---|---:|---:|---:|---:|"]
    pkg += [f"| {k} | {v['before']['n']} | {v['before']['ece']:.3f} / {v['after']['ece']:.3f} | "
            f"{v['before']['auc']:.3f} / {v['after']['auc']:.3f} | {v['beyond_support']} |" for k, v in examples_cv.items()]
    edges = ", ".join(f"{k} {v} (median {sup['medians'][k]})" for k, v in sup["edges"].items())
    return [
        "## Beyond the support: the hinge the shipped head now has (`head/support.py`)", "",
        "Four text statistics (`head/textstats.py`: digit share, share of words holding a digit, share of",
        "Latin-script character n-grams the fit rows never use, longest run of ASCII without a space; shares",
        "as one-sided 95% Wilson bounds), their edges the largest out-of-fold value over the fit rows (package",
        f"examples + the table's examples): {edges}. Beyond an edge the probabilities are mixed with the",
        "uniform, the head keeping 1 / (1 + excess in support-widths); inside, nothing changes. Before: the same",
        f"head without it. Route unchanged on every dev row and probe: {sup['argmax_unchanged']}. Thresholds from",
        "examples/escalation.toml (balanced surfaces; quality surfaces halfway to 1).", "",
        *far, "", *dev, "",
        f"Dev rows beyond the support, by source: {sup['beyond_by_source']}.", "", *pkg, "",
        f"Added decision latency (both stages measure the text; best of 5 per request, with minus without, "
        f"{sup['added_ms']['n']} dev prompts): p50 {sup['added_ms']['p50']} ms, p95 {sup['added_ms']['p95']} ms.", ""]


def ood_markdown(ood: dict) -> list[str]:
    rows = ["| alpha | mean confidence, dev | mean confidence, far probes | ROC AUC right vs wrong (dev) "
            "| dev ECE with the cascade | dev accuracy |", "|---:|---:|---:|---:|---:|---:|"]
    rows += [f"| {a} | {v['dev_conf']:.3f} | {v['far_conf']:.3f} | {v['auc_right_wrong']:.3f} | "
             f"{v['dev_cascade_ece']:.3f} | {v['dev_cascade_accuracy']:.3f} |" for a, v in ood["alphas"].items()]
    kinds = list(ood["alphas"]["0.0"]["far_conf_by_kind"])
    by_kind = ["| | " + " | ".join(kinds) + " |", "|---|" + "---:|" * len(kinds),
               "| head confidence (alpha 0) | " + " | ".join(f"{ood['alphas']['0.0']['far_conf_by_kind'][k]:.2f}" for k in kinds) + " |",
               "| character n-grams the cheap stage knows | " + " | ".join(f"{ood['coverage']['far_by_kind'][k]:.2f}" for k in kinds) + " |"]
    c = ood["coverage"]
    return [
        "## Out-of-distribution signal (`head/familiarity.py`) on the shipped head", "",
        f"Far probes: `llmrouter/quality/probes.py` ({len(kinds)} kinds, written for the package). Median familiarity "
        f"ratio (layer-16 states, k-NN distance over the training rows' own): dev {ood['ratio_median']['dev']}, far probes "
        f"{ood['ratio_median']['far']}. The cheap stage decides {ood['cheap_decides_far']:.0%} of the probes alone.", "",
        *rows, "", "Per kind of probe:", "", *by_kind, "",
        f"Character n-gram coverage on dev: median {c['dev_median']}, 5th percentile {c['dev_q05']}; ROC AUC of "
        f"coverage for right vs wrong on dev {c['auc_right_wrong_dev']}.", "",
        "Reading: the layer-16 distance does not see the far probes as far (their median ratio is the dev",
        "prompts'), so no alpha lowers their confidence without lowering every request's; alpha > 0 only",
        "lowers the ROC AUC and, from 1 up, pushes the dev ECE past 0.05. The head is already unsure of",
        "random tokens, keyboard mash and foreign prose, not of base64, hex, logs or number tables.",
        "Character n-gram coverage does tell the probes apart, but 16% of the dev prompts (138 of the 147 in",
        "Chinese) know under half their n-grams too, and the head is right on 71% of those at 0.72 confidence: softening by",
        "coverage (1 + alpha * max(0, 0.5 / coverage - 1), checked by hand) raised the dev ECE to 0.093",
        "at alpha 0.25. Disagreement between the head's members does not separate the probes from the",
        "dev prompts either (ROC AUC 0.52 for right vs wrong). So the shipped head keeps alpha 0: the",
        "hidden-state distance is no out-of-distribution signal on this shift. (The table above is the head",
        "without the hinge of the next section.)", ""]


if __name__ == "__main__":
    main()
