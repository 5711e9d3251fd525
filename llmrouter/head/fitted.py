"""A light head over the router model's own hidden states (a FittedHead), and what it reads.

`llmrouter tune` fits a FittedHead and stores it beside the route table as one `.npz` file:
arrays plus a JSON metadata record, never pickle. A head is only valid for the states it was
fitted on, so it is keyed to the model's sha256, the exact router prompt (`feature_key`) and the
table's route names; `check()` refuses anything else.

What it holds, and what each mode does with it (`decide`):

    scored    the model's own route scores, calibrated: p ∝ exp((log p_model + bias) / T_model)
              (bias corrects the model's preference for some route names)
    fitted    multinomial logistic regression over [mean state, last state, log p_model]
              (members.Dense), optionally with more members: the same at an intermediate
              layer, and a character n-gram model of the text (members.Chars); their
              log-probabilities add up, then one temperature: the decision is "fitted"
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
from llmrouter.head.calibration import fit_bias_temperature, log_softmax, softmax
from llmrouter.head.cheap import CheapStage
from llmrouter.head.familiarity import Familiarity
from llmrouter.head.members import KINDS, TEXT, Chars, Dense, Member, layers_of
from llmrouter.head.support import Support

FORMAT = 2  # 1: one dense head with top-level arrays (still read)
BLOCKS = ("mean", "last", "logp")
EPS = 1e-6


@dataclass(frozen=True)
class Observation:
    """What one forward pass of the router model tells about a request: route scores and hidden
    states (what a head reads; a decider makes them)."""

    scores: dict[str, float]  # the model's own P(route), renormalised over the table's routes
    mean: np.ndarray | None = None  # hidden state averaged over the request's tokens (in context)
    last: np.ndarray | None = None  # hidden state of the prompt's last token (has read it all)
    layers: dict[int, tuple[np.ndarray, np.ndarray]] | None = None  # layer -> (mean, last) there
    text: str | None = None  # the request text the model read (before token truncation)


def stack(observations: Sequence[Observation], routes: Sequence[str]) -> dict[str, np.ndarray]:
    """Feature blocks for a list of Observations: `logp`; `mean`, `last` with hidden
    states; `mean@L`, `last@L` per tapped layer; `text` with the request texts."""
    out: dict[str, np.ndarray] = {
        "logp": np.log(np.clip([[o.scores.get(r, 0.0) for r in routes] for o in observations], EPS, 1.0))
    }
    if not observations:
        return out
    first = observations[0]
    if first.mean is not None:
        out["mean"] = _rows([o.mean for o in observations])
        out["last"] = _rows([o.last for o in observations])
    for layer in sorted(first.layers or {}):
        out[f"mean@{layer}"] = _rows([o.layers[layer][0] if o.layers else None for o in observations])
        out[f"last@{layer}"] = _rows([o.layers[layer][1] if o.layers else None for o in observations])
    if first.text is not None:
        out[TEXT] = np.array([o.text for o in observations], dtype=str)
    return out


def _rows(vectors: Sequence[np.ndarray | None]) -> np.ndarray:
    """One row per observation; every observation of a batch must carry the block."""
    if any(v is None for v in vectors):
        raise ValueError("some observations lack hidden states the others have")
    return np.stack([v for v in vectors if v is not None]).astype(np.float64)


@dataclass(frozen=True)
class FittedHead:
    """Calibration of the model's scores and, optionally, a head: logistic members over the
    model's states and the request's text (head/members.py) whose log-probabilities add up."""

    routes: tuple[str, ...]
    model_sha256: str
    feature_key: str
    model_bias: np.ndarray  # (K,) added to log p_model before the temperature
    model_temperature: float = 1.0
    members: tuple[Member, ...] = ()
    temperature: float = 1.0
    threshold: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)  # how it was fitted (C, rows, scores...)
    cheap: CheapStage | None = None  # a first stage that reads only the text (a cascade), if tuned
    digest: str = ""  # sha256 of the file it was loaded from (part of decision-cache keys)
    familiarity: Familiarity | None = None  # softens the head's confidence far from its training rows
    support: Support | None = None  # shrinks confidence toward uniform beyond the fit rows' text support

    # --- using it ------------------------------------------------------------------------
    @property
    def has_head(self) -> bool:
        return bool(self.members)

    @property
    def blocks(self) -> tuple[str, ...]:
        """Every feature block the head reads, in order of first use."""
        return tuple(dict.fromkeys(b for m in self.members for b in m.reads))

    @property
    def layers(self) -> tuple[int, ...]:
        """The intermediate layers whose states the head reads."""
        return layers_of(self.blocks)

    @property
    def exit_layer(self) -> int | None:
        """The deepest layer the head reads when it reads nothing above it (no final-layer state,
        no model scores): the forward pass may stop there (early exit). None otherwise."""
        if not self.has_head or not self.layers or any(b in BLOCKS for b in self.blocks):
            return None
        return max(self.layers)

    def needs_states(self, mode: str) -> bool:
        return self.has_head and mode in ("fitted", "combined")

    def model_proba(self, logp: np.ndarray) -> np.ndarray:
        """Calibrated model probabilities from log p_model (rows: requests)."""
        return softmax((np.asarray(logp, dtype=np.float64) + self.model_bias) / self.model_temperature)

    def head_logits(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """One member: its logits. Several: the weighted sum of their log-probabilities."""
        if not self.has_head:
            raise ValueError("this fit has no head (calibration only)")
        if len(self.members) == 1:
            return self.members[0].logits(features)
        return sum(m.weight * log_softmax(m.logits(features)) for m in self.members)  # type: ignore[return-value]

    def head_proba(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """The head's probabilities: its logits over the temperature, which grows for requests
        far from the training rows (familiarity.py)."""
        t = self.temperature
        if self.familiarity is not None:
            return softmax(self.head_logits(features) / (t * self.familiarity.factor(features))[:, None])
        return softmax(self.head_logits(features) / t)

    def proba(self, features: dict[str, np.ndarray], mode: str) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities per row for `mode`, and whether the head decided each row; softened
        beyond the support of the fit rows (support.py) after the choice, which it never changes."""
        p, by_head = self._proba(features, mode)
        if self.support is not None and TEXT in features:
            p = self.support.soften(p, [str(t) for t in features[TEXT]])
        return p, by_head

    def _proba(self, features: dict[str, np.ndarray], mode: str) -> tuple[np.ndarray, np.ndarray]:
        pm = self.model_proba(features["logp"])
        if mode == "scored" or not self.has_head:
            return pm, np.zeros(len(pm), dtype=bool)
        ph = self.head_proba(features)
        if mode == "fitted":
            return ph, np.ones(len(ph), dtype=bool)
        use = ph.max(axis=1) >= self.threshold
        return np.where(use[:, None], ph, pm), use

    def with_support(self, support: Support | None) -> FittedHead:
        """A copy whose confidence (and its cheap stage's) is softened beyond `support`."""
        cheap = replace(self.cheap, support=support) if self.cheap is not None else None
        return replace(self, support=support, cheap=cheap)

    def decide(self, obs: Observation, mode: str) -> tuple[dict[str, float], str]:
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
        extra_blocks: Sequence[Sequence[str]] = (), chars_C: float = 0.0,
    ) -> FittedHead:
        """A copy with a head fitted on `features` (temperature and threshold kept): a logistic
        member over `blocks`, one more per `extra_blocks` entry, and a character n-gram member
        when `chars_C` > 0. Several members weigh one half each (the temperature rescales)."""
        y, k = np.asarray(y), len(self.routes)
        sets = [tuple(blocks)] + [tuple(b) for b in extra_blocks]
        n = len(sets) + (chars_C > 0)
        w = 1.0 if n == 1 else 0.5
        members: list[Member] = [Dense.fit(features, y, k, blocks=b, C=C, seed=seed, weight=w,
                                           sample_weight=sample_weight) for b in sets]
        if chars_C > 0:
            members.append(Chars.fit(features, y, k, C=chars_C, seed=seed, weight=w,
                                     sample_weight=sample_weight))
        return replace(self, members=tuple(members), info={**self.info, "C": C, "rows": int(len(y))})

    # --- storing -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the head as one .npz (arrays + JSON metadata); atomic."""
        p = Path(path)
        meta = {
            "format": FORMAT, "routes": list(self.routes), "model_sha256": self.model_sha256,
            "feature_key": self.feature_key, "model_temperature": self.model_temperature,
            "members": [m.meta() for m in self.members], "temperature": self.temperature,
            "threshold": self.threshold, "info": self.info,
            "cheap": self.cheap.meta() if self.cheap is not None else None,
            "familiarity": self.familiarity.meta() if self.familiarity is not None else None,
            "support": self.support.meta() if self.support is not None else None,
        }
        arrays: dict[str, np.ndarray] = {"model_bias": np.asarray(self.model_bias, dtype=np.float32)}
        for i, m in enumerate(self.members):
            for name, a in m.arrays().items():
                arrays[f"m{i}_{name}"] = a if a.dtype == np.uint8 else np.asarray(a, dtype=np.float32)
        if self.cheap is not None:
            for name, a in self.cheap.member.arrays().items():
                arrays[f"cheap_{name}"] = a if a.dtype == np.uint8 else np.asarray(a, dtype=np.float32)
        if self.familiarity is not None:
            for name, a in self.familiarity.arrays().items():
                arrays[f"fam_{name}"] = np.asarray(a, dtype=np.float32)
        if self.support is not None:
            for name, a in self.support.arrays().items():
                arrays[f"sup_{name}"] = a  # float64: a fit row exactly at an edge stays inside it
        arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)  # type: ignore[arg-type]  # numpy's stub takes **kwds for allow_pickle
        os.replace(tmp, p)
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FittedHead:
        """Read a head written by `save`; ConfigError if it is missing or not a head."""
        try:
            digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                arr = {k: z[k] if z[k].dtype == np.uint8 else z[k].astype(np.float64)
                       for k in z.files if k != "meta"}
            fmt = meta.get("format")
            if fmt not in (1, FORMAT):
                raise ConfigError(f"{path}: head format {fmt} is not {FORMAT}", hint="re-run `llmrouter tune`")
            members: list[Member] = []
            if fmt == 1 and "coef" in arr:
                members.append(Dense(tuple(meta["blocks"]), arr["center"], arr["scale"], arr["coef"],
                                     arr["intercept"], 1.0, float(meta.get("info", {}).get("C", 0.0))))
            for i, m in enumerate(meta.get("members", [])):
                own = {k.split("_", 1)[1]: v for k, v in arr.items() if k.startswith(f"m{i}_")}
                members.append(KINDS[m["kind"]].restore(m, own))
            cheap = None
            if meta.get("cheap"):
                own = {k.split("_", 1)[1]: v for k, v in arr.items() if k.startswith("cheap_")}
                cheap = CheapStage.restore(meta["routes"], meta["cheap"], own)
            familiarity = None
            if meta.get("familiarity"):
                own = {k.split("_", 1)[1]: v for k, v in arr.items() if k.startswith("fam_")}
                familiarity = Familiarity.restore(meta["familiarity"], own)
            support = None
            if meta.get("support"):
                support = Support.restore(meta["support"], {k[4:]: v for k, v in arr.items() if k.startswith("sup_")})
            return cls(
                routes=tuple(meta["routes"]), model_sha256=meta["model_sha256"],
                feature_key=meta["feature_key"], model_bias=arr["model_bias"],
                model_temperature=float(meta["model_temperature"]), members=tuple(members),
                temperature=float(meta["temperature"]), threshold=float(meta["threshold"]),
                info=meta.get("info", {}), cheap=cheap, digest=digest, familiarity=familiarity,
            ).with_support(support)
        except FileNotFoundError:
            raise ConfigError(f"no fitted head at {path}", hint="run `llmrouter tune` to make one") from None
        except ConfigError:
            raise
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise ConfigError(f"{path} is not a fitted head: {exc}") from None
