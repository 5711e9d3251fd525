"""The shipped easy/hard head: fitted by `tune` on the package's own difficulty examples
(llmrouter/data/difficulty_examples.jsonl), scored on ../shared/eval/difficulty-dev.jsonl (534
prompts it never saw); writes bench/results/difficulty.{json,md} and, with --ship,
llmrouter/difficulty.head.npz (in the package, so that a copy of the example table anywhere
finds it, as copies of the default table find theirs). Where the table sets `content_view`, the
dev prompts are scored as the table decides them, through the view, and also read whole.

    python bench/difficulty.py [--eval-dir ../shared/eval] [--ship]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from llmrouter.config import Config  # noqa: E402
from llmrouter.head import FittedHead  # noqa: E402
from llmrouter.quality import evaluate as ev  # noqa: E402
from llmrouter.quality import shift  # noqa: E402
from llmrouter.quality import observed as obs  # noqa: E402
from llmrouter.quality import tune as tn  # noqa: E402
from llmrouter.router import Router  # noqa: E402

OUT = ROOT / "bench" / "results"
TABLE = ROOT / "examples" / "difficulty.toml"
DATA = ROOT / "llmrouter" / "data" / "difficulty_examples.jsonl"


def observed(cfg: Config, records: list[ev.Record], view: bool = False) -> obs.Observed:
    """The records' features; with `view`, of what the table's decider reads of them (its content view)."""
    router = Router(cfg.with_router(cache=False, mode="scored", head=""))
    read = router.decider.read if view else str
    feats, ms = obs.observe(router.decider, [read(r.text) for r in records])
    router.close()
    return obs.Observed(feats, np.array([cfg.table.names.index(r.label) for r in records]), ms)


def decided(head: FittedHead, mode: str, data: obs.Observed) -> np.ndarray:
    """Route probabilities as the table decides them: the cheap stage where it is sure, else the head."""
    p, _ = head.proba(data.feats, mode)
    if head.cheap is not None:
        cheap, decides = head.cheap.read([str(t) for t in data.feats["text"]])
        p = np.where(decides[:, None], cheap, p)
    return p


def rates(y: np.ndarray, p_hard: np.ndarray, hard: int) -> dict:
    """ROC AUC of P(hard), and the share of easy / hard requests routed to hard."""
    to_hard = p_hard >= 0.5
    return {"auc": round(ev.roc_auc(y == hard, p_hard), 4),
            "easy_to_hard": round(float(to_hard[y != hard].mean()), 4),
            "hard_to_hard": round(float(to_hard[y == hard].mean()), 4), "n": int(len(y))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--eval-dir", default=str(ROOT.parent / "shared" / "eval"))
    ap.add_argument("--ship", action="store_true")
    args = ap.parse_args()
    t0 = time.time()
    cfg = Config.load(TABLE).with_router(mode="scored", head="")
    routes = cfg.table.names
    hard = routes.index("hard")
    records = ev.load_records(DATA)
    result = tn.tune(cfg, records, refit_all=True, log=lambda s: print(s, flush=True))
    head = result.head
    assert head is not None
    spec = result.spec
    data = observed(cfg, records)
    extra = observed(cfg, [ev.Record(t, lab) for t, lab in zip(*obs.extra_examples(cfg))])
    folds = shift.cluster_folds(data.y, data.feats[tn.cluster_block(data.feats)], 5, 0)
    res: dict = {"spec": spec.label, "examples_n": len(records), "grouped_cv": result.grouped}
    if spec.mode in ("fitted", "combined"):
        p, _, used = tn.cross_validate(spec.as_("fitted"), data, folds, routes, extra)
        res["cluster_cv_examples"] = rates(data.y[used], p[used, hard], hard)
    dev_records = ev.load_records(Path(args.eval_dir) / "difficulty-dev.jsonl")
    view = cfg.router.content_view
    dev = observed(cfg, dev_records, view=view)
    zero = tn.softmax(dev.feats["logp"])
    res["content_view"] = view
    res["dev_zero_shot"] = rates(dev.y, zero[:, hard], hard)
    res["dev_shipped_head"] = rates(dev.y, decided(head, result.config.router.mode, dev)[:, hard], hard)
    if view:  # the same head reading the requests whole: what the view changes
        whole = observed(cfg, dev_records)
        res["dev_shipped_head_whole"] = rates(whole.y, decided(head, result.config.router.mode, whole)[:, hard], hard)
    res["seconds"] = round(time.time() - t0)
    print(json.dumps(res, indent=1), flush=True)
    (OUT / "difficulty.json").write_text(json.dumps(res, indent=1))
    (OUT / "difficulty.md").write_text(markdown(res))
    if args.ship:
        head.save(ROOT / "llmrouter" / "difficulty.head.npz")  # in the package: copies of the table find it
        print("shipped llmrouter/difficulty.head.npz; mode", result.config.router.mode)


def markdown(res: dict) -> str:
    view = " (content view)" if res.get("content_view") else ""
    rows = [(f"zero-shot (the model's own scores){view}", res["dev_zero_shot"]),
            (f"shipped head (package examples only){view}", res["dev_shipped_head"])]
    if "dev_shipped_head_whole" in res:
        rows.append(("shipped head, requests read whole (content_view = false)", res["dev_shipped_head_whole"]))
    cv = res.get("cluster_cv_examples")
    return "\n".join([
        "# Easy/hard routing out of the box", "",
        f"`python bench/difficulty.py --ship`; 2-core AMD EPYC, no GPU. Head: `{res['spec']}`, fitted by `tune` on "
        f"the package's {res['examples_n']} difficulty examples (llmrouter/data/difficulty_examples.jsonl).", "",
        "On ../shared/eval/difficulty-dev.jsonl (sources and labels the head never saw)"
        + ("; the table decides on each request's content view (`content_view = true`, llmrouter/head/claims.py), "
           "the head is fitted on requests as written:" if res.get("content_view") else ":"), "",
        "| router | ROC AUC | easy -> hard | hard -> hard | n |", "|---|---:|---:|---:|---:|",
        *[f"| {k} | {v['auc']:.3f} | {v['easy_to_hard']:.1%} | {v['hard_to_hard']:.1%} | {v['n']} |" for k, v in rows],
        "",
        (f"Grouped-CV (clusters within routes) over the package's examples: ROC AUC {cv['auc']:.3f}, "
         f"easy -> hard {cv['easy_to_hard']:.1%}, hard -> hard {cv['hard_to_hard']:.1%}." if cv else ""),
        f"Tune's grouped-CV accuracy/ECE: {json.dumps(res['grouped_cv'])}", ""])


if __name__ == "__main__":
    main()
