"""Learning from outcomes: a router that maximises quality minus lambda * cost, and the
quality-vs-cost curve it is judged by.

    {"prompt": ..., "outcomes": {"<target>": {"score": 0..1, "cost_usd": ...}, ...}, "source": ...}

Records like these come from offline evaluations, or from `serve` decision logs joined with
`/v1/feedback` scores (see `llmrouter outcomes-from-logs`). Per target, a ridge regression over
the router model's hidden states predicts the score a request will get there; the router sends a
request to the target with the best predicted score minus lambda times the target's mean cost,
and leaves the best single target only when another one is predicted better by a margin.
Lambda and the margin are chosen on out-of-fold predictions (folds grouped by source where the
records name sources) for a cost budget or a quality floor; by default the floor is the best
single target's quality, so the router never trades quality it has not shown it can keep.

The curve: each (lambda, margin) is one operating point (mean cost, mean score) from the
out-of-fold choices and the recorded outcomes. Baselines: always-cheapest, best single target,
random mixes of the single targets (the segments between them) and the oracle (per request the
best score, cheapest among ties, swept over lambda). Area: the mean, over the cost range between
the cheapest and the dearest single target, of the best score reachable at that cost; reported as
the share of the gap between always-cheapest and the oracle that the router recovers (APGR-style).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmrouter.errors import ConfigError, RequestError, need
from llmrouter.types import Request

LAMBDAS = (0.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0, 1e9)  # score per USD
MARGINS = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3)  # predicted score another target must win by
NOISE_SE = 1.0  # "never loses by more than noise": within this many standard errors of the paired gap


@dataclass(frozen=True)
class OutcomeRecord:
    text: str
    scores: dict[str, float]
    costs: dict[str, float]
    source: str = ""


def load_outcomes(path: str | os.PathLike[str]) -> list[OutcomeRecord]:
    """Read outcome records; every line names a prompt and, per target, a score in [0, 1] and a cost."""
    try:
        lines = Path(path).read_text("utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"no outcomes file at {path}",
                          hint='pass a .jsonl of {"prompt", "outcomes": {TARGET: {"score", "cost_usd"}}} lines') from None
    out = []
    for n, line in enumerate(lines, 1):
        if line.strip():
            out.append(_record(line, f"{path}:{n}"))
    if not out:
        raise ConfigError(f"{path} has no outcome records")
    return out


def _record(line: str, where: str) -> OutcomeRecord:
    try:
        row = json.loads(line)
        text = Request.of(row.get("messages", row.get("prompt"))).text
        outcomes = row["outcomes"]
        scores = {t: float(o["score"]) for t, o in outcomes.items()}
        costs = {t: float(o.get("cost_usd", 0.0)) for t, o in outcomes.items()}
    except (ValueError, KeyError, TypeError, AttributeError, RequestError) as exc:
        raise ConfigError(f"{where}: not an outcome record ({exc})",
                          hint='each line: {"prompt": ..., "outcomes": {"<target>": {"score": 0..1, "cost_usd": ...}}}') from None
    if any(not -1.0 <= s <= 2.0 for s in scores.values()):  # another scale, not a metric's overshoot
        raise ConfigError(f"{where}: scores must lie in [0, 1]", hint="rescale the scores to 0 (bad) .. 1 (good)")
    scores = {t: min(1.0, max(0.0, s)) for t, s in scores.items()}  # e.g. a metric's -0.03: clipped
    return OutcomeRecord(text, scores, costs, str(row.get("source", "")))


def is_outcomes_file(path: str | os.PathLike[str]) -> bool:
    """Whether the first record of a JSONL file carries `outcomes` (not a route label)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                try:
                    return isinstance(json.loads(line).get("outcomes"), dict)
                except (ValueError, AttributeError):
                    return False
    return False


def matrices(records: Sequence[OutcomeRecord]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Targets, scores and costs (rows: records, columns: targets; NaN where a record has no
    outcome for a target, as in logs where each request was answered once)."""
    targets = sorted({t for r in records for t in r.scores})
    if len(targets) < 2:
        raise ConfigError("outcome records must name at least two targets",
                          hint="a router needs a choice: add outcomes of another target")
    q = np.array([[r.scores.get(t, np.nan) for t in targets] for r in records])
    c = np.array([[r.costs.get(t, np.nan) if t in r.scores else np.nan for t in targets] for r in records])
    return targets, q, c


def complete_rows(q: np.ndarray) -> np.ndarray:
    """The records with an outcome for every target: the only ones a curve can be drawn on."""
    return np.flatnonzero(~np.isnan(q).any(axis=1))


# --- predicting scores ----------------------------------------------------------------------
@dataclass(frozen=True)
class ScoreModel:
    """Per-target ridge regression of the score on standardised features."""

    center: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (T, D)
    intercept: np.ndarray  # (T,)

    @classmethod
    def fit(cls, x: np.ndarray, q: np.ndarray) -> ScoreModel:
        need("sklearn", "tune", "fitting an outcomes router")
        from sklearn.linear_model import RidgeCV

        center, scale = x.mean(0), x.std(0) + 1e-6
        z = (x - center) / scale
        coef, intercept = np.zeros((q.shape[1], x.shape[1])), np.zeros(q.shape[1])
        for t in range(q.shape[1]):  # each target on the rows that have its outcome
            has = ~np.isnan(q[:, t])
            if has.sum() >= 2:
                m = RidgeCV(alphas=np.logspace(1, 5, 9)).fit(z[has], q[has, t])
                coef[t], intercept[t] = m.coef_, m.intercept_
            else:
                intercept[t] = float(np.nanmean(q[:, t])) if has.any() else 0.0
        return cls(center, scale, coef, intercept)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.center) / self.scale) @ self.coef.T + self.intercept


def out_of_fold_scores(x: np.ndarray, q: np.ndarray, folds: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    pred = np.full(q.shape, np.nan)
    for tr, te in folds:
        pred[te] = ScoreModel.fit(x[tr], q[tr]).predict(x[te])
    return pred


# --- choosing ---------------------------------------------------------------------------------
def choose(pred: np.ndarray, mean_cost: np.ndarray, lam: float, margin: float, base: int) -> np.ndarray:
    """Per row the target of best predicted score - lam * mean cost; `base` (the best single
    target) keeps a row unless another target beats it by `margin`."""
    util = pred - lam * mean_cost[None, :]
    util[:, base] += margin
    return util.argmax(axis=1)


@dataclass(frozen=True)
class Point:
    lam: float
    margin: float
    cost: float  # mean USD per request
    quality: float  # mean score


@dataclass
class Curve:
    targets: list[str]
    router: list[Point]
    singles: dict[str, tuple[float, float]]  # target -> (mean cost, mean score)
    oracle: list[tuple[float, float]]
    chosen: Point | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def operating_points(pred: np.ndarray, q: np.ndarray, c: np.ndarray, mean_cost: np.ndarray, base: int) -> list[Point]:
    rows = np.arange(len(q))
    out = []
    for lam in LAMBDAS:
        for margin in MARGINS:
            t = choose(pred, mean_cost, lam, margin, base)
            out.append(Point(lam, margin, float(c[rows, t].mean()), float(q[rows, t].mean())))
    return out


def oracle_points(q: np.ndarray, c: np.ndarray) -> list[tuple[float, float]]:
    rows = np.arange(len(q))
    pts = []
    for lam in LAMBDAS:
        t = (q - lam * c - 1e-9 * c).argmax(axis=1)  # ties: the cheaper
        pts.append((float(c[rows, t].mean()), float(q[rows, t].mean())))
    return pts


def reachable(points: Sequence[tuple[float, float]], cost: float, floor: float) -> float:
    """The best quality among points that cost at most `cost` (else `floor`)."""
    ok = [qq for cc, qq in points if cc <= cost + 1e-15]
    return max(ok, default=floor)


def area(points: Sequence[tuple[float, float]], lo: float, hi: float, floor: float, n: int = 200) -> float:
    """Mean best-reachable quality over costs in [lo, hi]."""
    grid = np.linspace(lo, hi, n) if hi > lo else np.array([lo])
    return float(np.mean([reachable(points, g, floor) for g in grid]))


def random_points(singles: dict[str, tuple[float, float]], n: int = 11) -> list[tuple[float, float]]:
    """Random mixes of pairs of single targets (expected cost and quality)."""
    vals = list(singles.values())
    pts = []
    for i in range(len(vals)):
        for j in range(i + 1, len(vals)):
            for w in np.linspace(0, 1, n):
                pts.append((w * vals[i][0] + (1 - w) * vals[j][0], w * vals[i][1] + (1 - w) * vals[j][1]))
    return pts


def paired_gap(q: np.ndarray, t: np.ndarray, base: int) -> tuple[float, float]:
    """Mean score gain of the choices `t` over always `base`, and its standard error."""
    d = q[np.arange(len(q)), t] - q[:, base]
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0


def pick(points: Sequence[Point], q: np.ndarray, pred: np.ndarray, mean_cost: np.ndarray, base: int,
         max_cost: float | None = None, min_quality: float | None = None) -> Point:
    """The operating point for a cost budget (best quality within it), a quality floor (cheapest
    above it), or by default: among the points that do not lose to the best single target by more
    than noise (paired standard error), the cheapest within noise of the best of them; none: the
    best single target alone."""
    if max_cost is not None:
        ok = [p for p in points if p.cost <= max_cost] or [min(points, key=lambda p: p.cost)]
        return max(ok, key=lambda p: (p.quality, -p.cost))
    if min_quality is None:
        base_q = float(q[:, base].mean())
        fair: list[tuple[Point, float]] = []  # points that do not lose beyond noise, with their SE
        for p in points:
            gain, se = paired_gap(q, choose(pred, mean_cost, p.lam, p.margin, base), base)
            if gain >= -NOISE_SE * se and p.quality >= base_q - NOISE_SE * se:
                fair.append((p, se))
        if not fair:
            return Point(0.0, float("inf"), float(mean_cost[base]), base_q)
        top, top_se = max(fair, key=lambda ps: (ps[0].quality, -ps[0].cost))
        # one-standard-error rule: the cheapest point as good as the best within noise
        return min((p for p, _ in fair if p.quality >= top.quality - NOISE_SE * top_se), key=lambda p: p.cost)
    ok = [p for p in points if p.quality >= min_quality] or [max(points, key=lambda p: p.quality)]
    return min(ok, key=lambda p: p.cost)


def curve(pred: np.ndarray, q: np.ndarray, c: np.ndarray, targets: list[str], max_cost: float | None = None,
          min_quality: float | None = None) -> Curve:
    """Operating points of the router on out-of-fold predictions, the baselines and the summary."""
    mean_cost, mean_q = c.mean(0), q.mean(0)
    base = int(np.argmax(mean_q - 1e-9 * mean_cost))
    singles = {t: (float(mean_cost[i]), float(mean_q[i])) for i, t in enumerate(targets)}
    pts = operating_points(pred, q, c, mean_cost, base)
    oracle = oracle_points(q, c)
    chosen = pick(pts, q, pred, mean_cost, base, max_cost, min_quality)
    out = Curve(targets, pts, singles, oracle, chosen)
    out.summary = summarize(out, q, pred, mean_cost, base)
    return out


def summarize(cv: Curve, q: np.ndarray, pred: np.ndarray, mean_cost: np.ndarray, base: int) -> dict[str, Any]:
    costs = [v[0] for v in cv.singles.values()]
    lo, hi = min(costs), max(costs)
    cheapest = min(cv.singles.values())
    best_cost, best_q = cv.singles[cv.targets[base]]
    router = [(p.cost, p.quality) for p in cv.router]
    auc = {name: area(pts, lo, hi, cheapest[1]) for name, pts in
           (("router", router), ("oracle", cv.oracle), ("random", random_points(cv.singles)),
            ("cheapest", [cheapest]), ("best_single", [(best_cost, best_q)]))}
    gap = auc["oracle"] - auc["cheapest"]
    target_q = 0.95 * best_q
    reach = [p.cost for p in cv.router if p.quality >= target_q]
    chosen = cv.chosen
    gain, se = (paired_gap(q, choose(pred, mean_cost, chosen.lam, chosen.margin, base), base)
                if chosen is not None and np.isfinite(chosen.margin) else (0.0, 0.0))
    return {
        "best_single": {"target": cv.targets[base], "cost": best_cost, "quality": best_q},
        "cheapest": {"cost": cheapest[0], "quality": cheapest[1]},
        "oracle_best": {"cost": cv.oracle[0][0], "quality": cv.oracle[0][1]},
        "area": auc, "apgr": (auc["router"] - auc["cheapest"]) / gap if gap > 0 else 0.0,
        "cost_to_95pct_best": min(reach) if reach else None,
        "chosen": None if chosen is None else {"lambda": chosen.lam, "margin": chosen.margin,
                                               "cost": chosen.cost, "quality": chosen.quality},
        "chosen_vs_best_single": {"gain": gain, "se": se},
    }


# --- from serve logs and /v1/feedback ----------------------------------------------------------
def from_feedback(events: Sequence[dict[str, Any]], prompts: dict[str, str],
                  cost_of: Any = None) -> tuple[list[dict[str, Any]], int]:
    """Outcome lines from `feedback` log events ({id, score, target}) and the prompts the
    application kept per response id (the logs carry no request text). Each line holds the one
    target that answered; `cost_of(target, prompt)` estimates its cost (e.g. from the table's
    prices). Returns the lines and how many feedback events had no prompt."""
    out, missing = [], 0
    for e in events:
        if e.get("event") != "feedback" or not e.get("target") or "score" not in e:
            continue
        text = prompts.get(str(e.get("id")))
        if text is None:
            missing += 1
            continue
        cost = float(cost_of(e["target"], text)) if cost_of is not None else 0.0
        out.append({"prompt": text, "source": "feedback",
                    "outcomes": {e["target"]: {"score": float(e["score"]), "cost_usd": cost}}})
    return out, missing
