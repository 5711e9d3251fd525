"""What `tune` chooses among: a Spec is one way to decide (a mode and, for a head, its members, C and
threshold), and the candidate lists it tries."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from llmrouter.head.members import TEXT, layers_of

BLOCK_SETS = (("mean", "last", "logp"), ("last", "logp"), ("mean", "logp"))
CS = (0.003, 0.01, 0.03, 0.1)
ENSEMBLE_CS = (0.01, 0.02, 0.03)  # C of the dense members when a head has several
CHARS_C = 10.0  # C of the character n-gram member (sparse TF-IDF rows need little shrinkage)
THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
EARLY_EXIT_LOSS = 0.01  # accuracy an early-exit head may give up for its cheaper forward pass


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
