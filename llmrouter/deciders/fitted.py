"""A light head over the router model's own hidden states, and the calibration of its scores.

`llmrouter tune` fits a FittedHead and stores it beside the route table as one `.npz` file:
arrays plus a JSON metadata record, never pickle. A head is only valid for the states it was
fitted on, so it is keyed to the model's sha256, the exact router prompt (`feature_key`) and the
table's route names; `check()` refuses anything else.

What it holds, and what each mode does with it (`decide`):

    scored    the model's own route scores, calibrated: p ∝ exp((log p_model + bias) / T_model)
              (bias corrects the model's preference for some route names)
    fitted    multinomial logistic regression over [mean state, last state, log p_model],
              temperature-scaled: the decision is "fitted"
    combined  the head when its top probability reaches `threshold` ("combined:head"),
              else the calibrated model scores ("combined:model")
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from llmrouter.errors import ConfigError

FORMAT = 1
BLOCKS = ("mean", "last", "logp")
EPS = 1e-6


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def stack(observations: Sequence[Any], routes: Sequence[str]) -> dict[str, np.ndarray]:
    """Feature blocks (`mean`, `last`, `logp`) for a list of decider Observations."""
    out: dict[str, np.ndarray] = {
        "logp": np.log(np.clip([[o.scores.get(r, 0.0) for r in routes] for o in observations], EPS, 1.0))
    }
    if observations and observations[0].mean is not None:
        out["mean"] = np.stack([o.mean for o in observations]).astype(np.float64)
        out["last"] = np.stack([o.last for o in observations]).astype(np.float64)
    return out


def design(features: dict[str, np.ndarray], blocks: Sequence[str]) -> np.ndarray:
    """The head's input matrix: the chosen blocks side by side."""
    missing = [b for b in blocks if b not in features]
    if missing:
        raise ValueError(f"feature block(s) {missing} not observed")
    return np.hstack([np.asarray(features[b], dtype=np.float64) for b in blocks])


@dataclass(frozen=True)
class FittedHead:
    """Calibration of the model's scores and, optionally, a logistic head over its hidden states."""

    routes: tuple[str, ...]
    model_sha256: str
    feature_key: str
    model_bias: np.ndarray  # (K,) added to log p_model before the temperature
    model_temperature: float = 1.0
    blocks: tuple[str, ...] = ()
    center: np.ndarray | None = None  # (D,)
    scale: np.ndarray | None = None  # (D,)
    coef: np.ndarray | None = None  # (K, D)
    intercept: np.ndarray | None = None  # (K,)
    temperature: float = 1.0
    threshold: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)  # how it was fitted (C, rows, scores...)
    digest: str = ""  # sha256 of the file it was loaded from (part of decision-cache keys)

    # --- using it ------------------------------------------------------------------------
    @property
    def has_head(self) -> bool:
        return self.coef is not None

    def needs_states(self, mode: str) -> bool:
        return self.has_head and mode in ("fitted", "combined")

    def model_proba(self, logp: np.ndarray) -> np.ndarray:
        """Calibrated model probabilities from log p_model (rows: requests)."""
        return softmax((np.asarray(logp, dtype=np.float64) + self.model_bias) / self.model_temperature)

    def head_logits(self, features: dict[str, np.ndarray]) -> np.ndarray:
        if not self.has_head:
            raise ValueError("this fit has no head (calibration only)")
        x = (design(features, self.blocks) - self.center) / self.scale
        return x @ self.coef.T + self.intercept  # type: ignore[union-attr]

    def head_proba(self, features: dict[str, np.ndarray]) -> np.ndarray:
        return softmax(self.head_logits(features) / self.temperature)

    def proba(self, features: dict[str, np.ndarray], mode: str) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities per row for `mode`, and whether the head decided each row."""
        pm = self.model_proba(features["logp"])
        if mode == "scored" or not self.has_head:
            return pm, np.zeros(len(pm), dtype=bool)
        ph = self.head_proba(features)
        if mode == "fitted":
            return ph, np.ones(len(ph), dtype=bool)
        use = ph.max(axis=1) >= self.threshold
        return np.where(use[:, None], ph, pm), use

    def decide(self, obs: Any, mode: str) -> tuple[dict[str, float], str]:
        """Scores over the routes and which part decided, for one decider Observation."""
        feats = stack([obs], self.routes)
        p, by_head = self.proba(feats, mode)
        scores = {r: float(v) for r, v in zip(self.routes, p[0])}
        if mode == "scored" or not self.has_head:
            return scores, "llama-scored+calibrated"
        if mode == "fitted":
            return scores, "fitted"
        return scores, "combined:head" if by_head[0] else "combined:model"

    def check(self, model_sha256: str, feature_key: str, routes: Sequence[str]) -> None:
        """Raise ConfigError unless this head was fitted for this model, prompt and table."""
        hint = "re-fit it with `llmrouter tune DATA --config TABLE --out TABLE`"
        if self.model_sha256 != model_sha256:
            raise ConfigError(
                f"the fitted head was made for model sha256 {self.model_sha256[:12]}..., "
                f"not {model_sha256[:12]}...", hint=hint)
        if tuple(routes) != self.routes:
            raise ConfigError(
                f"the fitted head knows routes {list(self.routes)}, the table has {list(routes)}",
                hint=hint)
        if self.feature_key != feature_key:
            raise ConfigError(
                "the fitted head was made with another router prompt (descriptions, examples, "
                "prompt template or max_request_tokens changed)", hint=hint)

    # --- fitting -------------------------------------------------------------------------
    @classmethod
    def calibration(
        cls, logp: np.ndarray, y: np.ndarray, routes: Sequence[str], *, model_sha256: str,
        feature_key: str, prior_strength: float = 1.0,
    ) -> FittedHead:
        """Fit the model-score calibration (per-route bias + temperature) on labelled rows."""
        bias, temp = fit_bias_temperature(np.asarray(logp), np.asarray(y), len(routes), prior_strength)
        return cls(routes=tuple(routes), model_sha256=model_sha256, feature_key=feature_key,
                   model_bias=bias, model_temperature=temp)

    def with_head(
        self, features: dict[str, np.ndarray], y: np.ndarray, *, blocks: Sequence[str], C: float,
        seed: int = 0, sample_weight: np.ndarray | None = None,
    ) -> FittedHead:
        """A copy with a logistic head fitted on `features` (temperature and threshold kept)."""
        from sklearn.linear_model import LogisticRegression

        x = design(features, blocks)
        center = x.mean(axis=0)
        scale = x.std(axis=0) + 1e-6
        y = np.asarray(y)
        k, present = len(self.routes), np.unique(y)
        from threadpoolctl import threadpool_limits

        clf = LogisticRegression(C=C, max_iter=3000, random_state=seed)
        with threadpool_limits(1):  # small problem: BLAS threads only fight (10x slower on 2 cores)
            clf.fit((x - center) / scale, y, sample_weight=sample_weight)
        coef = np.zeros((k, x.shape[1]))
        intercept = np.full(k, -20.0)  # a route with no training rows is (almost) never chosen
        if len(present) == 2:  # sklearn's binary case has one row of coefficients
            coef[present[1]], intercept[present[1]] = clf.coef_[0] / 2, clf.intercept_[0] / 2
            coef[present[0]], intercept[present[0]] = -clf.coef_[0] / 2, -clf.intercept_[0] / 2
        else:
            coef[clf.classes_], intercept[clf.classes_] = clf.coef_, clf.intercept_
        return replace(self, blocks=tuple(blocks), center=center, scale=scale, coef=coef,
                       intercept=intercept, info={**self.info, "C": C, "rows": int(len(y))})

    # --- storing -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the head as one .npz (arrays + JSON metadata); atomic."""
        p = Path(path)
        meta = {
            "format": FORMAT, "routes": list(self.routes), "model_sha256": self.model_sha256,
            "feature_key": self.feature_key, "model_temperature": self.model_temperature,
            "blocks": list(self.blocks), "temperature": self.temperature,
            "threshold": self.threshold, "info": self.info,
        }
        arrays = {"model_bias": self.model_bias,
                  "meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)}
        if self.has_head:
            arrays.update(center=self.center, scale=self.scale, coef=self.coef, intercept=self.intercept)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **{k: np.asarray(v, dtype=np.float32) if k != "meta" else v
                                      for k, v in arrays.items()})
        os.replace(tmp, p)
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FittedHead:
        """Read a head written by `save`; ConfigError if it is missing or not a head."""
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                arr = {k: z[k].astype(np.float64) for k in z.files if k != "meta"}
        except FileNotFoundError:
            raise ConfigError(f"no fitted head at {path}", hint="run `llmrouter tune` to make one") from None
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"{path} is not a fitted head: {exc}") from None
        if meta.get("format") != FORMAT:
            raise ConfigError(f"{path}: head format {meta.get('format')} is not {FORMAT}",
                              hint="re-run `llmrouter tune`")
        return cls(
            routes=tuple(meta["routes"]), model_sha256=meta["model_sha256"],
            feature_key=meta["feature_key"], model_bias=arr["model_bias"],
            model_temperature=float(meta["model_temperature"]), blocks=tuple(meta["blocks"]),
            center=arr.get("center"), scale=arr.get("scale"), coef=arr.get("coef"),
            intercept=arr.get("intercept"), temperature=float(meta["temperature"]),
            threshold=float(meta["threshold"]), info=meta.get("info", {}), digest=digest,
        )


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of `y` (a 1-d search)."""
    from scipy.optimize import minimize_scalar

    logits, y = np.asarray(logits, dtype=np.float64), np.asarray(y)

    def nll(log_t: float) -> float:
        p = softmax(logits / np.exp(log_t))
        return -float(np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def fit_bias_temperature(
    logp: np.ndarray, y: np.ndarray, k: int, strength: float = 1.0
) -> tuple[np.ndarray, float]:
    """Per-route biases and a temperature for the model's log-probabilities (L2 on the biases).

    The bias undoes the model's prior for some route names (label-prior calibration); the
    temperature makes the confidence honest.
    """
    from scipy.optimize import minimize

    logp, y = np.asarray(logp, dtype=np.float64), np.asarray(y)
    rows = np.arange(len(y))

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        b, log_t = theta[:k], theta[k]
        t = np.exp(log_t)
        z = (logp + b) / t
        p = softmax(z)
        nll = -np.mean(np.log(p[rows, y] + 1e-12))
        g = p.copy()
        g[rows, y] -= 1.0
        g /= len(y)
        grad_b = g.sum(axis=0) / t + 2 * strength * b / max(len(y), 1)
        grad_t = float(np.sum(g * (-z)))
        return float(nll + strength * np.sum(b * b) / max(len(y), 1)), np.append(grad_b, grad_t)

    res = minimize(loss, np.zeros(k + 1), jac=True, method="L-BFGS-B",
                   bounds=[(-20, 20)] * k + [(np.log(0.05), np.log(20.0))])
    return res.x[:k], float(np.exp(res.x[k]))
