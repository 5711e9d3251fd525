"""Tune a route table on labelled data: pick prompt variant, mode and calibration by cross-validation,
fit the head, write the tuned table, and show before/after on a held-out split.

    records -> held-out test split (never seen below)
    train   -> observe every request once per prompt variant (scores + hidden states, cached)
            -> cross-validated choice: scored / calibrated / fitted (blocks, C) / combined (threshold)
            -> fit on the training rows (+ the table's own route examples) -> FittedHead + tuned TOML

Deterministic for a given seed. Folds are grouped by source when the records name 3+ sources, so
the choice favours what carries over to requests from sources never seen.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from llmrouter.config import Config
from llmrouter.deciders.llama import LlamaDecider
from llmrouter.errors import ConfigError, need
from llmrouter.head import FittedHead
from llmrouter.head.calibration import softmax
from llmrouter.head.familiarity import Familiarity
from llmrouter.head.members import TEXT, layers_of
from llmrouter.head.support import Support
from llmrouter.head.textstats import NAMES
from llmrouter.quality import cascade, shift
from llmrouter.quality import evaluate as ev
from llmrouter.quality.observed import MIN_EXAMPLES, Observed, Progress, extra_examples, observe
from llmrouter.quality.specs import EARLY_EXIT_LOSS, THRESHOLDS, Spec, candidate_specs, exits_early
from llmrouter.router import Router


# --- fitting and predicting ------------------------------------------------------------------
def fit(spec: Spec, train: Observed, routes: Sequence[str], *, model_sha256: str = "",
        feature_key: str = "", seed: int = 0, calibration: shift.Calibration | None = None) -> FittedHead:
    """A FittedHead for `spec` from training rows; with `calibration`, its temperature and (alpha
    > 0) a familiarity measure over the training rows that softens it far from them."""
    head = FittedHead.calibration(train.feats["logp"], train.y, routes, model_sha256=model_sha256,
                                  feature_key=feature_key)
    if spec.mode in ("fitted", "combined"):
        head = head.with_head(train.feats, train.y, blocks=spec.blocks, C=spec.C, seed=seed,
                              extra_blocks=spec.extra, chars_C=spec.chars_C,
                              sample_weight=train.w if len(train.w) else None)
        cal = calibration or shift.Calibration(1.0, 0.0)
        fam = (replace(Familiarity.fit(train.feats, spec.blocks), alpha=cal.alpha)
               if cal.alpha > 0 else None)
        head = replace(head, temperature=cal.temperature, threshold=spec.threshold, familiarity=fam)
    return head


def predict(spec: Spec, head: FittedHead | None, feats: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities per row and whether the head decided, for `spec`."""
    if spec.mode == "scored" or head is None:
        return softmax(feats["logp"]), np.zeros(len(feats["logp"]), dtype=bool)
    mode = "scored" if spec.mode == "calibrated" else spec.mode
    return head.proba(feats, mode)


def cross_validate(spec: Spec, data: Observed, folds: list[tuple[np.ndarray, np.ndarray]],
                   routes: Sequence[str], extra: Observed | None = None, seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Out-of-fold probabilities, head logits (for temperature fitting) and the test rows used."""
    k = len(routes)
    proba = np.full((len(data.y), k), np.nan)
    logits = np.zeros((len(data.y), k))
    for tr, te in folds:
        train = data.take(tr) if extra is None else Observed.join(data.take(tr), extra)
        head = None if spec.mode == "scored" else fit(spec, train, routes, seed=seed)
        test = {kk: v[te] for kk, v in data.feats.items()}
        proba[te] = predict(spec, head, test)[0]
        if head is not None and head.has_head:
            logits[te] = head.head_logits(test)
    used = np.flatnonzero(~np.isnan(proba[:, 0]))
    return proba, logits, used


def score(y: np.ndarray, proba: np.ndarray) -> float:
    """The tuning criterion: mean of accuracy and macro-F1."""
    pred = proba.argmax(axis=1)
    cm = ev.confusion(y, pred, proba.shape[1])
    return float(((pred == y).mean() + ev.macro_f1(cm)) / 2)


def select(data: Observed, folds: list[tuple[np.ndarray, np.ndarray]], routes: Sequence[str],
           extra: Observed | None = None, seed: int = 0, log: Callable[[str], None] = lambda s: None,
           cal_folds: list[tuple[np.ndarray, np.ndarray]] | None = None,
           ) -> tuple[Spec, float, shift.Calibration, dict[str, float], np.ndarray]:
    """The best spec by cross-validated score, its head's calibration (temperature and
    out-of-distribution alpha, fitted on the folds), every spec's score, and the best spec's
    out-of-fold probabilities (calibrated; NaN rows: not in any test fold).
    `cal_folds` (default: `folds`) are the grouped folds the calibration is fitted on."""
    table: dict[str, float] = {}
    best: tuple[float, Spec] = (-1.0, Spec("scored"))
    best_p: np.ndarray = np.zeros(0)
    oof: dict[Spec, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for spec in candidate_specs(data.feats):
        proba, logits, used = cross_validate(spec, data, folds, routes, extra, seed)
        s = score(data.y[used], proba[used])
        table[spec.label] = s
        oof[spec] = (proba, logits, used)
        log(f"  {spec.label:<45} {s:.4f}")
        if s > best[0] + 1e-9:
            best, best_p = (s, spec), proba
    best, best_p = prefer_early_exit(data.y, best, best_p, oof, log)
    spec = best[1]
    cal = shift.Calibration(1.0, 0.0)
    if spec.mode == "fitted":
        cal, logits, ratio, used = calibrate(spec, data, cal_folds or folds, routes, extra, seed,
                                             oof[spec] if cal_folds is None else None)
        log(f"  calibration on the grouped folds: temperature {cal.temperature:.3f}, "
            f"out-of-distribution alpha {cal.alpha}")
        head_p = shift.apply(logits, ratio, cal)
        model_p = oof[Spec("calibrated")][0]
        # combined: the head where it is sure, the calibrated model elsewhere (a whole pass: not
        # for an early-exit head; scored on the same folds as the rest: not with cluster folds)
        for t in THRESHOLDS[1:] if not exits_early(spec) and cal_folds is None else ():
            mixed = np.where((head_p.max(axis=1) >= t)[:, None], head_p, model_p)
            s = score(data.y[used], mixed[used])
            label = spec.as_("combined", t).label
            table[label] = s
            log(f"  {label:<45} {s:.4f}")
            if s > best[0] + 1e-9:
                best, best_p = (s, spec.as_("combined", t)), mixed
        best_p = best_p if best[1].mode == "combined" else shift.cross_fitted(logits, data.y, ratio, cal_folds or folds)
    return best[1], best[0], cal, table, best_p


def calibrate(spec: Spec, data: Observed, folds: list[tuple[np.ndarray, np.ndarray]], routes: Sequence[str],
              extra: Observed | None, seed: int, oof: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
              ) -> tuple[shift.Calibration, np.ndarray, np.ndarray, np.ndarray]:
    """The head's temperature and out-of-distribution alpha from its out-of-fold logits and
    familiarity ratios on grouped `folds` (cross-validated again unless `oof` holds them)."""
    _, logits, used = oof if oof is not None else cross_validate(spec, data, folds, routes, extra, seed)
    ratio = shift.out_of_fold_ratios(data.feats, spec.blocks, folds, extra.feats if extra is not None else None)
    return shift.fit(logits[used], data.y[used], ratio[used]), logits, ratio, used


def model_stage_calibration(spec: Spec, train: Observed, folds: list[tuple[np.ndarray, np.ndarray]],
                            routes: Sequence[str], extra: Observed | None, seed: int,
                            choice: cascade.CascadeChoice, log: Callable[[str], None]) -> shift.Calibration:
    """The head's calibration refitted on the rows the cheap stage leaves to it: the harder ones,
    where a temperature fitted on every row is overconfident."""
    _, logits, ratio, used = calibrate(spec, train, folds, routes, extra, seed)
    rest = used[choice.passed] if choice.passed is not None else used
    cal = shift.fit(logits[rest], train.y[rest], ratio[rest])
    log(f"  calibration of the model stage on the {len(rest)} rows the cheap stage leaves: temperature "
        f"{cal.temperature:.3f}, out-of-distribution alpha {cal.alpha}")
    return cal


def prefer_early_exit(y: np.ndarray, best: tuple[float, Spec], best_p: np.ndarray,
                      oof: dict[Spec, tuple[np.ndarray, np.ndarray, np.ndarray]], log: Callable[[str], None],
                      ) -> tuple[tuple[float, Spec], np.ndarray]:
    """The best early-exit head instead of `best` when its cross-validated accuracy is within
    EARLY_EXIT_LOSS of it: a cheaper forward pass for (almost) the same decisions."""
    early = [(s, p) for s, (p, _, _) in oof.items() if exits_early(s)]
    if not early or exits_early(best[1]):
        return best, best_p
    used = np.flatnonzero(~np.isnan(best_p[:, 0]))

    def accuracy(p: np.ndarray) -> float:
        return float((p[used].argmax(axis=1) == y[used]).mean())

    spec, p = max(early, key=lambda sp: accuracy(sp[1]))
    a_best, a_early = accuracy(best_p), accuracy(p)
    keep = a_early >= a_best - EARLY_EXIT_LOSS
    log(f"  early exit: {spec.label} accuracy {a_early:.3f} vs {a_best:.3f} "
        f"({'chosen' if keep else 'not chosen'}: within {EARLY_EXIT_LOSS:.2f} is required)")
    return ((score(y[used], p[used]), spec), p) if keep else (best, best_p)


# --- the cascade's cheap stage -----------------------------------------------------------------
def choose_cascade(train: Observed, folds: list[tuple[np.ndarray, np.ndarray]], oof: np.ndarray,
                   routes: Sequence[str], extra: Observed | None, seed: int, log: Callable[[str], None]
                   ) -> cascade.CascadeChoice | None:
    """Cross-validate the cheap stage on the same folds and choose its threshold (see cascade.py)."""
    if TEXT not in train.feats:
        return None
    more = (extra.feats, extra.y) if extra is not None and TEXT in extra.feats else None
    logits = cascade.out_of_fold_logits(train.feats, train.y, len(routes), folds, more, seed)
    used = np.flatnonzero(~np.isnan(oof[:, 0]))
    choice = cascade.choose(train.y[used], logits[used], oof[used])
    grouped = shift.grouped_metrics(train.y, cascade.cross_fitted(train.y, logits, oof, folds), routes)
    choice = replace(choice, grouped_cv=grouped)
    t = "never first (busy model only)" if np.isinf(choice.threshold) else f"threshold {choice.threshold}"
    td = "" if choice.decided_temperature is None else f" (temperature {choice.decided_temperature:.3f} there)"
    log(f"  cascade: cheap stage alone {choice.cheap_alone:.3f}, model alone {choice.model_alone:.3f}; "
        f"{t}: decides {choice.share:.1%} at {choice.cheap_accuracy:.3f}{td}, model the rest at "
        f"{choice.model_accuracy:.3f}, together {choice.accuracy:.3f}; cross-fitted on the folds: "
        f"accuracy {grouped['accuracy']:.3f}, ECE {grouped['ece']:.3f}")
    return choice


def held_out_cascade(test: Observed, model_p: np.ndarray, head: FittedHead | None, routes: Sequence[str],
                     spec: Spec) -> dict[str, Any]:
    """Metrics of the tuned table on held-out rows: the cheap stage where it decides, else the model."""
    if head is None or head.cheap is None:
        return ev.metrics(test.y, model_p.argmax(1), model_p.max(1), routes)
    cheap_p, use = head.cheap.read([str(t) for t in test.feats[TEXT]])
    p = np.where(use[:, None], cheap_p, model_p)
    deciders = np.where(use, head.cheap.name, spec.mode)
    out = ev.metrics(test.y, p.argmax(1), p.max(1), routes, deciders=deciders.tolist())
    out["stages"] = cascade.stage_accuracy(test.y, cheap_p, model_p, head.cheap.threshold, use)
    return out


# --- the whole loop ----------------------------------------------------------------------------
@dataclass
class TuneResult:
    spec: Spec
    config: Config
    head: FittedHead | None
    cv: dict[str, float]
    before: dict[str, Any]  # held-out split: the model's raw scores
    after: dict[str, Any]  # held-out split: the new head (with its cascade)
    warnings: list[str]
    variant: str
    current: dict[str, Any] | None = None  # held-out split: the head the table already has
    grouped: dict[str, dict[str, float]] = field(default_factory=dict)  # "new"/"current" on the CV folds
    grouping: str = "source"  # how the CV folds were made: source, cluster, stratified


def make_folds(train: Observed, sources: np.ndarray, grouping: str, k: int, seed: int
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    """CV folds over the training rows: whole sources held out; else clusters within each route
    (shift.cluster_folds), else stratified."""
    if grouping == "source":
        return ev.source_folds(train.y, sources, k=k, seed=seed)
    if grouping == "cluster":
        return shift.cluster_folds(train.y, train.feats[cluster_block(train.feats)], k, seed)
    return ev.stratified_folds(train.y, k, seed)


def cluster_block(feats: dict[str, np.ndarray]) -> str:
    """The vectors requests are clustered by: the mean state at the deepest observed layer."""
    layers = layers_of(tuple(feats))
    return f"mean@{layers[-1]}" if layers else "mean" if "mean" in feats else "logp"


def current_head(config: Config, sha: str, fkey: str, log: Callable[[str], None]) -> FittedHead | None:
    """The head the table already has, if it was fitted for this model and prompt (else None)."""
    path = config.router.head_path(config.path)
    if path is None or config.router.mode not in ("fitted", "combined"):
        return None
    try:
        head = FittedHead.load(path)
        head.check(sha, fkey, config.table.names)
    except ConfigError as exc:
        log(f"  (the table's current head is not compared: {exc})")
        return None
    return head


def head_metrics(head: FittedHead, mode: str, rows: Observed, routes: Sequence[str]) -> dict[str, Any]:
    """A fixed head on labelled rows: the head's own probabilities (no cascade)."""
    p, _ = head.proba(rows.feats, mode)
    return ev.metrics(rows.y, p.argmax(1), p.max(1), routes)


def compare_with_current(new: dict[str, float], current: dict[str, float] | None, where: str) -> list[str]:
    """Warnings when the new head is not better than the table's current one."""
    if current is None:
        return []
    out = []
    if new["accuracy"] < current["accuracy"] - 1e-9:
        out.append(f"{where}: the new head's accuracy {new['accuracy']:.3f} is below the current head's "
                   f"{current['accuracy']:.3f}; keep the current head unless the new data matter more")
    if new["ece"] > current["ece"] + 0.01:
        out.append(f"{where}: the new head's ECE {new['ece']:.3f} is worse than the current head's "
                   f"{current['ece']:.3f}")
    return out


def tune(
    config: Config, records: Sequence[ev.Record], *, prompts: Sequence[str] = (),
    candidates: Sequence[Config] = (), seed: int = 0, folds: int = 5, test_fraction: float = 0.25,
    by_source: bool | None = None, refit_all: bool = False, progress: Progress | None = None,
    log: Callable[[str], None] = print, cache_dir: Path | None = None,
) -> TuneResult:
    """Choose prompt variant, mode and calibration by CV on a training split; fit; compare on the
    held-out split, with the model's raw scores and with the head the table already has. The
    returned config names no head file yet (see `write`)."""
    need("sklearn", "tune", "llmrouter tune")
    need("scipy", "tune", "llmrouter tune")
    routes = config.table.names
    ev.check_labels(records, routes)
    labels = np.array([routes.index(r.label) for r in records])
    sources = np.array([r.source for r in records])
    train_idx, test_idx, grouped = ev.split_indices(labels, sources.tolist(), test_fraction, seed, by_source)
    grouping = "source" if grouped else "stratified" if by_source is False else "cluster"
    warnings = [f"route {r!r} has only {n} labelled example(s) in the training split (want {MIN_EXAMPLES}+)"
                for r, n in ev.few_examples([routes[i] for i in labels[train_idx]], routes, MIN_EXAMPLES).items()]
    for w in warnings:
        log(f"warning: {w}")

    variants = [(config.router.prompt, config)] + [(p, config.with_router(prompt=p)) for p in prompts]
    variants += [(c.path or f"candidate {i}", c) for i, c in enumerate(candidates)]
    ex_texts, ex_labels = extra_examples(config)
    seen = {r.text for r in records}  # tuning on the example set itself: no row twice
    ex_texts, ex_labels = map(list, zip(*[(t, lab) for t, lab in zip(ex_texts, ex_labels)
                                          if t not in seen])) if ex_texts else ([], [])
    best: tuple[float, Any] = (-1.0, None)
    for name, cfg in variants:
        if cfg.table.names != routes:
            raise ValueError(f"variant {name} has other routes than the table being tuned")
        log(f"variant {name}:")
        router = Router(cfg.with_router(cache=False, mode="scored", head=""))
        try:
            d = router.decider
            if not isinstance(d, LlamaDecider):
                raise ConfigError("tune fits a head over the in-process router model's states; this table "
                                  f"decides with {d.name!r}", hint="tune a table without [router.remote]")
            feats, ms = observe(d, [r.text for r in records], progress, cache_dir)
            ex_feats, _ = observe(d, ex_texts, progress, cache_dir) if ex_texts else ({}, None)
            sha, fkey = d.model_id, d.feature_key
        finally:
            router.close()
            del router
            gc.collect()
        data = Observed(feats, labels, ms)
        extra = Observed(ex_feats, np.array([routes.index(x) for x in ex_labels])) if ex_texts else None
        train = data.take(train_idx)
        cv_folds = make_folds(train, sources[train_idx], "stratified" if grouping == "cluster" else grouping,
                              folds, seed)
        cal_folds = make_folds(train, sources[train_idx], grouping, folds, seed) if grouping == "cluster" else None
        log(f"  cross-validation: {len(cv_folds)} folds, {'stratified' if cal_folds else 'grouped by ' + grouping}"
            f"{'; calibration on folds grouped by cluster' if cal_folds else ''}")
        spec, s, cal, table, oof = select(train, cv_folds, routes, extra, seed, log, cal_folds)
        cv_folds = cal_folds or cv_folds  # from here on: the grouped folds
        log(f"  -> {spec.label}: cross-validated score {s:.4f}")
        if s > best[0] + 1e-9:
            best = (s, (name, cfg, spec, cal, table, data, extra, sha, fkey, cv_folds, oof))
    _, (name, cfg, spec, cal, table, data, extra, sha, fkey, cv_folds, oof) = best
    choice = choose_cascade(data.take(train_idx), cv_folds, oof, routes, extra, seed, log) if spec.mode != "scored" else None
    if spec.mode == "fitted" and choice is not None and 0 < choice.share < 1:
        cal = model_stage_calibration(spec, data.take(train_idx), cv_folds, routes, extra, seed, choice, log)

    def final(rows: Observed) -> FittedHead | None:
        if extra is not None:
            rows = Observed.join(rows, extra)
        if spec.mode == "scored":
            return None
        h = fit(spec, rows, routes, model_sha256=sha, feature_key=fkey, seed=seed, calibration=cal)
        if choice is not None:
            h = replace(h, cheap=cascade.fit_stage(rows.feats[TEXT], rows.y, routes, choice, seed))
        if TEXT in rows.feats:
            h = h.with_support(Support.fit([str(t) for t in rows.feats[TEXT]]))
        return replace(h, info={**h.info, "spec": spec.label, "cv_score": round(best[0], 4),
                                "seed": seed, "refit_all": refit_all, "by_source": grouping == "source",
                                "grouping": grouping, "alpha": cal.alpha})

    head = final(data.take(train_idx))
    test = data.take(test_idx)  # before/after: always with a head that never saw these rows
    base_p = softmax(test.feats["logp"])
    new_p, _ = predict(spec, head, test.feats)
    before = ev.metrics(test.y, base_p.argmax(1), base_p.max(1), routes)
    after = held_out_cascade(test, new_p, head, routes, spec)
    log_support(head, test, log)
    old = current_head(cfg, sha, fkey, log)
    grouped_cv = {"new": shift.grouped_metrics(data.y[train_idx], oof, routes)}
    current = None
    if old is not None:
        cv_rows = np.unique(np.concatenate([te for _, te in cv_folds]))
        grouped_cv["current"] = _rounded(head_metrics(old, cfg.router.mode, data.take(train_idx[cv_rows]), routes))
        current = held_out_cascade(test, old.proba(test.feats, cfg.router.mode)[0], old, routes, spec)
    worse = (compare_with_current(grouped_cv["new"], grouped_cv.get("current"), f"CV grouped by {grouping}")
             + compare_with_current(after, current, "held-out split"))
    for w in worse:
        log(f"warning: {w}")
    warnings += worse
    if refit_all:
        head = final(data)
    if head is not None:
        head = replace(head, info={**head.info, "grouped_cv": grouped_cv["new"]})
    mode = {"scored": "scored", "calibrated": "scored"}.get(spec.mode, spec.mode)
    tuned = cfg.with_router(mode=mode)
    return TuneResult(spec, tuned, head, table, before, after, warnings, name, current, grouped_cv, grouping)


def log_support(head: FittedHead | None, test: Observed, log: Callable[[str], None]) -> None:
    """Report the out-of-distribution support: its edges and the held-out rows beyond them."""
    if head is None or head.support is None or TEXT not in test.feats:
        return
    sup = head.support
    edges = ", ".join(f"{n} {e:.3g} (median {m:.3g})" for n, e, m in zip(NAMES, sup.edge, sup.median))
    w = sup.weight([str(t) for t in test.feats[TEXT]])
    far = w > 0
    p, _ = head.proba(test.feats, "fitted" if head.has_head else "scored")
    right = (p.argmax(1) == test.y)[far]
    log(f"  out-of-distribution support (edges over the fit rows): {edges}; held-out rows beyond it: "
        f"{int(far.sum())} of {len(w)}" + (f", accuracy {right.mean():.3f}, mean confidence "
                                          f"{p[far].max(1).mean():.3f}" if far.any() else ""))


def _rounded(m: dict[str, Any]) -> dict[str, float]:
    return {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4),
            "ece": round(m["ece"], 4), "n": int(m["n"])}


def write(result: TuneResult, out: str | Path) -> list[Path]:
    """Write the tuned table (TOML) and its head (.npz beside it)."""
    return write_table(result.config, result.head, out)


def write_table(cfg: Config, head: FittedHead | None, out: str | Path) -> list[Path]:
    """The table at `out` and, when there is one, its head beside it (`<out>.head.npz`)."""
    out = Path(out)
    files = []
    if head is not None:
        head_path = out.with_suffix(".head.npz")
        head.save(head_path)
        cfg = cfg.with_router(head=head_path.name)
        files.append(head_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(cfg.to_toml(), "utf-8")
    return [out] + files
