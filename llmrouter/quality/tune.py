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
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from llmrouter.config import Config
from llmrouter.deciders.llama import LlamaDecider
from llmrouter.errors import ConfigError, need
from llmrouter.head import FittedHead, stack
from llmrouter.head.calibration import fit_temperature, softmax
from llmrouter.head.members import TEXT, layers_of
from llmrouter.paths import PACKAGE_DIR, user_dir
from llmrouter.quality import cascade
from llmrouter.quality import evaluate as ev
from llmrouter.router import Router

BLOCK_SETS = (("mean", "last", "logp"), ("last", "logp"), ("mean", "logp"))
CS = (0.003, 0.01, 0.03, 0.1)
ENSEMBLE_CS = (0.01, 0.02, 0.03)  # C of the dense members when a head has several
CHARS_C = 10.0  # C of the character n-gram member (sparse TF-IDF rows need little shrinkage)
THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
EARLY_EXIT_LOSS = 0.01  # accuracy an early-exit head may give up for its cheaper forward pass
MIN_EXAMPLES = 8
PACKAGE_EXAMPLES = PACKAGE_DIR / "data" / "examples.jsonl"
Progress = Callable[[str, int], Callable[[], None]]  # (label, total) -> advance-one callback


@dataclass(frozen=True)
class Spec:
    """One way to decide: a mode, and for a head its feature blocks, C and threshold."""

    mode: str  # "scored" (raw), "calibrated", "fitted", "combined"
    blocks: tuple[str, ...] = ()
    C: float = 0.0
    threshold: float = 0.0
    extra: tuple[tuple[str, ...], ...] = ()  # more dense members (e.g. an intermediate layer's)
    chars_C: float = 0.0  # > 0: a character n-gram member too

    @property
    def parts(self) -> list[str]:
        """What each member of the head reads: `mean+last+logp`, ..., `chars`."""
        return ["+".join(b) for b in (self.blocks, *self.extra)] + (["chars"] if self.chars_C else [])

    @property
    def label(self) -> str:
        if self.mode in ("scored", "calibrated"):
            return self.mode
        extra = f", threshold={self.threshold}" if self.mode == "combined" else ""
        return f"{self.mode}({' | '.join(self.parts)}, C={self.C}{extra})"

    def as_(self, mode: str, threshold: float = 0.0) -> Spec:
        """The same head in another mode."""
        return replace(self, mode=mode, threshold=threshold)


def candidate_specs(feats: dict[str, np.ndarray]) -> list[Spec]:
    """What `select` tries: the model alone, calibrated, one dense head per block set and C, and
    where intermediate layers (and the texts) were observed, heads with several members: the final
    layer with the deepest observed one, and with all of them (a member per layer)."""
    specs = [Spec("scored"), Spec("calibrated")] + [Spec("fitted", b, c) for b in BLOCK_SETS for c in CS]
    base = BLOCK_SETS[0]
    layers = layers_of(tuple(feats))
    at = [(f"mean@{x}", f"last@{x}", "logp") for x in layers]
    extras = ([(at[-1],)] if at else []) + ([tuple(at)] if len(at) > 1 else [])  # deepest; all observed
    for extra in extras:
        for c in ENSEMBLE_CS:
            specs.append(Spec("fitted", base, c, extra=extra))
            if TEXT in feats:
                specs.append(Spec("fitted", base, c, extra=extra, chars_C=CHARS_C))
    return specs + early_exit_specs(feats)


def early_exit_specs(feats: dict[str, np.ndarray]) -> list[Spec]:
    """Heads that read only intermediate layers (no final layer, no model scores): the decider
    can stop the forward pass at the deepest one. One per observed layer, and all of them."""
    layers = layers_of(tuple(feats))
    at = [(f"mean@{x}", f"last@{x}") for x in layers]
    sets = [(b,) for b in at] + ([tuple(at)] if len(at) > 1 else [])
    chars = CHARS_C if TEXT in feats else 0.0
    return [Spec("fitted", s[0], c, extra=s[1:], chars_C=chars) for s in sets for c in ENSEMBLE_CS]


def exits_early(spec: Spec) -> bool:
    """Whether a spec's head reads only intermediate layers (and text)."""
    blocks = [b for bs in (spec.blocks, *spec.extra) for b in bs]
    return spec.mode == "fitted" and bool(blocks) and all("@" in b for b in blocks)


@dataclass
class Observed:
    """Features of labelled requests under one prompt variant (rows aligned with `y`)."""

    feats: dict[str, np.ndarray]
    y: np.ndarray
    ms: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def take(self, idx: np.ndarray) -> Observed:
        return Observed({k: v[idx] for k, v in self.feats.items()}, self.y[idx],
                        self.ms[idx] if len(self.ms) else self.ms)

    @staticmethod
    def join(a: Observed, b: Observed) -> Observed:
        return Observed({k: np.concatenate([a.feats[k], b.feats[k]]) for k in a.feats},
                        np.concatenate([a.y, b.y]))


# --- observing ------------------------------------------------------------------------------
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


# --- fitting and predicting ------------------------------------------------------------------
def fit(spec: Spec, train: Observed, routes: Sequence[str], *, model_sha256: str = "",
        feature_key: str = "", seed: int = 0, temperature: float = 1.0) -> FittedHead:
    """A FittedHead for `spec` from training rows."""
    head = FittedHead.calibration(train.feats["logp"], train.y, routes, model_sha256=model_sha256,
                                  feature_key=feature_key)
    if spec.mode in ("fitted", "combined"):
        head = head.with_head(train.feats, train.y, blocks=spec.blocks, C=spec.C, seed=seed,
                              extra_blocks=spec.extra, chars_C=spec.chars_C)
        head = replace(head, temperature=temperature, threshold=spec.threshold)
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
           ) -> tuple[Spec, float, float, dict[str, float], np.ndarray]:
    """The best spec by cross-validated score, its head temperature, every spec's score, and the
    best spec's out-of-fold probabilities (NaN rows: not in any test fold)."""
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
    temperature = 1.0
    if spec.mode == "fitted":
        _, logits, used = oof[spec]
        temperature = fit_temperature(logits[used], data.y[used])
        cal = oof[Spec("calibrated")][0]
        head_p = softmax(logits / temperature)
        # combined: the head where it is sure, the calibrated model elsewhere (a whole pass: not
        # for an early-exit head)
        for t in THRESHOLDS[1:] if not exits_early(spec) else ():
            mixed = np.where((head_p.max(axis=1) >= t)[:, None], head_p, cal)
            s = score(data.y[used], mixed[used])
            label = spec.as_("combined", t).label
            table[label] = s
            log(f"  {label:<45} {s:.4f}")
            if s > best[0] + 1e-9:
                best, best_p = (s, spec.as_("combined", t)), mixed
    return best[1], best[0], temperature, table, best_p


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
    t = "never first (busy model only)" if np.isinf(choice.threshold) else f"threshold {choice.threshold}"
    log(f"  cascade: cheap stage alone {choice.cheap_alone:.3f}, model alone {choice.model_alone:.3f}; "
        f"{t}: decides {choice.share:.1%} at {choice.cheap_accuracy:.3f}, model the rest at "
        f"{choice.model_accuracy:.3f}, together {choice.accuracy:.3f}")
    return choice


def held_out_cascade(test: Observed, model_p: np.ndarray, head: FittedHead | None, routes: Sequence[str],
                     spec: Spec) -> dict[str, Any]:
    """Metrics of the tuned table on held-out rows: the cheap stage where it decides, else the model."""
    if head is None or head.cheap is None:
        return ev.metrics(test.y, model_p.argmax(1), model_p.max(1), routes)
    cheap_p = head.cheap.proba([str(t) for t in test.feats[TEXT]])
    use = cheap_p.max(axis=1) >= head.cheap.threshold
    p = np.where(use[:, None], cheap_p, model_p)
    deciders = np.where(use, head.cheap.name, spec.mode)
    out = ev.metrics(test.y, p.argmax(1), p.max(1), routes, deciders=deciders.tolist())
    out["stages"] = cascade.stage_accuracy(test.y, cheap_p, model_p, head.cheap.threshold)
    return out


# --- the whole loop ----------------------------------------------------------------------------
@dataclass
class TuneResult:
    spec: Spec
    config: Config
    head: FittedHead | None
    cv: dict[str, float]
    before: dict[str, Any]
    after: dict[str, Any]
    warnings: list[str]
    variant: str


def tune(
    config: Config, records: Sequence[ev.Record], *, prompts: Sequence[str] = (),
    candidates: Sequence[Config] = (), seed: int = 0, folds: int = 5, test_fraction: float = 0.25,
    by_source: bool | None = None, refit_all: bool = False, progress: Progress | None = None,
    log: Callable[[str], None] = print, cache_dir: Path | None = None,
) -> TuneResult:
    """Choose prompt variant, mode and calibration by CV on a training split; fit; compare on the
    held-out split. The returned config names no head file yet (see `write`)."""
    need("sklearn", "tune", "llmrouter tune")
    need("scipy", "tune", "llmrouter tune")
    routes = config.table.names
    ev.check_labels(records, routes)
    labels = np.array([routes.index(r.label) for r in records])
    sources = np.array([r.source for r in records])
    train_idx, test_idx, by_source = ev.split_indices(labels, sources.tolist(), test_fraction, seed, by_source)
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
        tsrc = sources[train_idx]
        cv_folds = (ev.source_folds(train.y, tsrc, k=folds, seed=seed) if by_source
                    else ev.stratified_folds(train.y, folds, seed))
        spec, s, temp, table, oof = select(train, cv_folds, routes, extra, seed, log)
        log(f"  -> {spec.label}: cross-validated score {s:.4f}")
        if s > best[0] + 1e-9:
            best = (s, (name, cfg, spec, temp, table, data, extra, sha, fkey, cv_folds, oof))
    _, (name, cfg, spec, temp, table, data, extra, sha, fkey, cv_folds, oof) = best
    choice = choose_cascade(data.take(train_idx), cv_folds, oof, routes, extra, seed, log) if spec.mode != "scored" else None

    def final(rows: Observed) -> FittedHead | None:
        if extra is not None:
            rows = Observed.join(rows, extra)
        if spec.mode == "scored":
            return None
        h = fit(spec, rows, routes, model_sha256=sha, feature_key=fkey, seed=seed, temperature=temp)
        if choice is not None:
            h = replace(h, cheap=cascade.fit_stage(rows.feats[TEXT], rows.y, routes, choice, seed))
        return replace(h, info={**h.info, "spec": spec.label, "cv_score": round(best[0], 4),
                                "seed": seed, "refit_all": refit_all, "by_source": by_source})

    head = final(data.take(train_idx))
    test = data.take(test_idx)  # before/after: always with a head that never saw these rows
    base_p = softmax(test.feats["logp"])
    new_p, _ = predict(spec, head, test.feats)
    before = ev.metrics(test.y, base_p.argmax(1), base_p.max(1), routes)
    after = held_out_cascade(test, new_p, head, routes, spec)
    if refit_all:
        head = final(data)
    mode = {"scored": "scored", "calibrated": "scored"}.get(spec.mode, spec.mode)
    tuned = cfg.with_router(mode=mode)
    return TuneResult(spec, tuned, head, table, before, after, warnings, name)


def write(result: TuneResult, out: str | Path) -> list[Path]:
    """Write the tuned table (TOML) and its head (.npz beside it)."""
    out = Path(out)
    files = []
    cfg = result.config
    if result.head is not None:
        head_path = out.with_suffix(".head.npz")
        result.head.save(head_path)
        cfg = cfg.with_router(head=head_path.name)
        files.append(head_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(cfg.to_toml(), "utf-8")
    return [out] + files
