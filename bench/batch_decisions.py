"""What one router-model decision costs: alone, in batches, and with the pass stopped early.

    .venv/bin/python bench/batch_decisions.py [--requests 32] [--config TABLE]

Three questions, on the real default model with its fitted head, decision cache off:

1. Does a request alone get slower in a context built for batches? Single decisions, interleaved,
   on a decider with max_batch = 1 (one sequence) and one with max_batch = 8 (unified KV, 9
   sequences): p50 / p95 each.
2. What does a batch save? The same requests decided in batches of 1, 2, 4 and 8
   (`decide_batch`): wall and CPU ms per decision.
3. What does early exit save? A head that reads only intermediate layers stops the pass at its
   deepest one; against it, the whole pass with every token an output (what a head reading the
   final layer and the model's route scores needs). Only when the table's head exits early.

Writes bench/results/batch_decisions.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEV = HERE.parent.parent / "shared" / "eval" / "task-routing-dev.jsonl"
sys.path.insert(0, str(HERE))

from llmrouter_bench import load, measure  # noqa: E402

from llmrouter.config import Config  # noqa: E402
from llmrouter.router import Router  # noqa: E402


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..1), rounded (measure.pct's convention)."""
    return round(measure.pct(values, q * 100), 1)


def timed(fn: Any) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return (time.perf_counter() - w) * 1000, (time.process_time() - c) * 1000


def single(texts: list[str], one: Any, many: Any) -> dict[str, Any]:
    a, b = [], []
    for t in texts:  # interleaved: both see the same machine
        a.append(timed(lambda: one.decide(t))[0])
        b.append(timed(lambda: many.decide(t))[0])
    return {"max_batch=1": {"p50_ms": pct(a, 0.5), "p95_ms": pct(a, 0.95)},
            "max_batch=8": {"p50_ms": pct(b, 0.5), "p95_ms": pct(b, 0.95)}}


def batches(texts: list[str], decider: Any, sizes: list[int], rounds: int = 3) -> dict[str, Any]:
    """Every request decided in groups of each size, the sizes interleaved round by round; the
    mean per decision over all of them (the same requests for every size)."""
    wall: dict[int, list[float]] = {s: [] for s in sizes}
    cpu: dict[int, list[float]] = {s: [] for s in sizes}
    for _ in range(rounds):
        for size in sizes:
            w_all = c_all = 0.0
            for i in range(0, len(texts), size):
                group = texts[i:i + size]
                w, c = timed(lambda: decider.decide_batch(group) if len(group) > 1 else decider.decide(group[0]))
                w_all, c_all = w_all + w, c_all + c
            wall[size].append(w_all / len(texts))
            cpu[size].append(c_all / len(texts))
    return {str(s): {"wall_ms_per_decision": round(statistics.median(wall[s]), 1),
                     "cpu_ms_per_decision": round(statistics.median(cpu[s]), 1)} for s in sizes}


def early_exit(texts: list[str], decider: Any) -> dict[str, Any] | None:
    at = decider._exit_layer()
    if at is None:
        return None
    stopped, whole = [], []
    for t in texts:
        stopped.append(timed(lambda: decider.decide(t))[1])
        whole.append(timed(lambda: decider.observe(t))[1])  # every token an output, every layer
    return {"exit_layer": at, "n_layer": decider.n_layer,
            "stopped_cpu_ms_p50": pct(stopped, 0.5), "whole_pass_cpu_ms_p50": pct(whole, 0.5),
            "ratio": round(statistics.median(stopped) / statistics.median(whole), 2)}


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = ["# One router-model decision: alone, batched, stopped early", "",
             f"Machine: {m['cores']} cores ({m['cpu']}), no GPU, idle otherwise. {r['requests']} requests from "
             f"{r['data']}; default table, its fitted head, 1 llama.cpp thread, decision cache off.", "",
             "## A request alone (interleaved)", "", "| context | p50 ms | p95 ms |", "|---|---|---|"]
    for k, v in r["single"].items():
        lines.append(f"| {k} | {v['p50_ms']} | {v['p95_ms']} |")
    lines += ["", "## Batches (decide_batch)", "", "All the requests in groups of each size; mean per decision, median of 3 "
              "interleaved rounds.", "", "| batch | wall ms / decision | CPU ms / decision |", "|---|---|---|"]
    for k, v in r["batches"].items():
        lines.append(f"| {k} | {v['wall_ms_per_decision']} | {v['cpu_ms_per_decision']} |")
    e = r.get("early_exit")
    if e:
        lines += ["", "## Early exit", "",
                  f"The head reads layers up to {e['exit_layer']} of {e['n_layer']}: the pass stops there. CPU ms p50 "
                  f"per decision: stopped {e['stopped_cpu_ms_p50']}, whole pass {e['whole_pass_cpu_ms_p50']} "
                  f"(ratio {e['ratio']})."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--config", default=None)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    pool = load.base_prompts(str(DEV))
    texts = [pool[(i * 37) % len(pool)][:600] for i in range(args.requests)]
    cfg = Config.load(args.config).with_router(cache=False)
    one, many = Router(cfg.with_router(max_batch=1)), Router(cfg.with_router(max_batch=8))
    for t in texts[:4]:  # warm both
        one.decider.decide(t), many.decider.decide(t)
    result = {
        "requests": len(texts), "data": DEV.name if DEV.exists() else "built-in samples",
        "single": single(texts, one.decider, many.decider),
        "batches": batches(texts, many.decider, [1, 2, 4, 8]),
        "early_exit": early_exit(texts, many.decider),
        "machine": {"cpu": load._cpu(), "cores": os.cpu_count(), "python": platform.python_version()},
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch_decisions.json").write_text(json.dumps(result, indent=2))
    (out / "batch_decisions.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
