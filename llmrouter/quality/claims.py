"""Fitting the content view's claim detector (head/claims.py) on the package's own examples.

Claims: llmrouter/data/claim_examples.jsonl's `claim` lines, written for it (claims about a
request's difficulty, its route, instructions to the router, role play aimed at it, tags and
markup). Content: that file's `content` lines (requests that mention difficulty, routes or
roles as their subject) and every segment of the package's example requests
(llmrouter/data/examples.jsonl and the unwrapped ones of difficulty_examples.jsonl). Each text is
cut into the segments the view classifies.

    python -m llmrouter.quality.claims          # cross-validates, fits, writes llmrouter/claims.npz
"""

from __future__ import annotations

import json

import numpy as np

from llmrouter.head.claims import DETECTOR, THRESHOLD, ClaimDetector, segments, without_markup
from llmrouter.head.members import TEXT, Chars
from llmrouter.paths import PACKAGE_DIR

DATA = PACKAGE_DIR / "data"
C_GRID = (1.0, 3.0, 10.0, 30.0)


def _lines(name: str) -> list[dict]:
    return [json.loads(x) for x in (DATA / name).read_text("utf-8").splitlines() if x.strip()]


def _pieces(text: str) -> list[str]:
    plain = without_markup(text)
    return [plain[a:b].strip() for a, b, code in segments(plain) if not code]


def rows() -> tuple[list[str], np.ndarray, np.ndarray]:
    """Segments, labels (1: claim) and groups (the text each segment came from)."""
    texts: list[str] = []
    labels: list[int] = []
    groups: list[int] = []
    own = _lines("claim_examples.jsonl")
    requests = [r["prompt"] for r in _lines("examples.jsonl")]
    requests += [r["prompt"] for r in _lines("difficulty_examples.jsonl") if r.get("source") != "wrapped"]
    sources = [(r["text"], int(r["label"] == "claim")) for r in own] + [(t, 0) for t in requests]
    for g, (text, label) in enumerate(sources):
        for piece in _pieces(text) or [text]:
            texts.append(piece)
            labels.append(label)
            groups.append(g)
    return texts, np.array(labels), np.array(groups)


def _fit(texts: list[str], y: np.ndarray, C: float) -> ClaimDetector:
    # claims are the rarer class: balance them so a few hundred lines weigh as much as the requests
    w = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    member = Chars.fit({TEXT: np.array(texts, dtype=str)}, y, 2, C=C, sample_weight=w)
    return ClaimDetector(member, THRESHOLD)


def cross_validate(texts: list[str], y: np.ndarray, groups: np.ndarray, C: float, k: int = 5
                   ) -> dict[str, float]:
    """Claim recall and the share of content segments dropped, over folds that hold out whole texts."""
    fold = np.random.default_rng(0).permutation(groups.max() + 1)[groups] % k
    p = np.zeros(len(y))
    for f in range(k):
        train = fold != f
        det = _fit([t for t, m in zip(texts, train) if m], y[train], C)
        p[~train] = det.proba([t for t, m in zip(texts, ~train) if m])
    cut = p >= THRESHOLD
    return {"C": C, "claim_recall": round(float(cut[y == 1].mean()), 4),
            "content_dropped": round(float(cut[y == 0].mean()), 4), "n": int(len(y))}


def main() -> None:
    texts, y, groups = rows()
    cv = [cross_validate(texts, y, groups, C) for C in C_GRID]
    for row in cv:
        print(json.dumps(row))
    # the most claims caught while dropping at most 1% of content segments
    ok = [r for r in cv if r["content_dropped"] <= 0.01] or cv
    best = max(ok, key=lambda r: (r["claim_recall"], -r["content_dropped"]))
    det = _fit(texts, y, best["C"])
    ClaimDetector(det.member, THRESHOLD, {"grouped_cv": best}).save(DETECTOR)
    print("wrote", DETECTOR, json.dumps(best))


if __name__ == "__main__":
    main()
