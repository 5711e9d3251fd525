"""Decision latency on this machine: llmrouter's path vs the llama.cpp floor, other paths, cold start.

    .venv/bin/python bench/decision_latency.py [--threads 1,2] [--limit 40]

Requests: a sample of ../shared/eval/task-routing-dev.jsonl when it is there (real prompts),
else llmrouter's built-in samples. Writes bench/results/latency.{json,md,png}.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.progress import Progress

from llmrouter_bench import breakeven
from llmrouter_bench import latency

from llmrouter import log

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "eval" / "task-routing-dev.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-paths", action="store_true")
    args = ap.parse_args()
    log.configure(level="warning")
    data = str(SHARED) if SHARED.exists() else None
    threads = [int(t) for t in args.threads.split(",")]
    with Progress(transient=True) as bar:
        task = bar.add_task("benchmark", total=None)
        results = latency.run(None, None, threads, data, limit=args.limit, repeats=args.repeats,
                                paths=not args.no_paths, progress=lambda: bar.advance(task))
    results["data"] = "shared/eval/task-routing-dev.jsonl (sample)" if data else "built-in samples"
    from llmrouter.config import Config

    # the server's tax and the break-even, with the default routes on priced (emulated) targets
    results["breakeven"] = breakeven.run(Config.load(HERE.parent / "examples" / "priced.toml"), n=30)
    for p in latency.write(results, HERE / "results", "latency"):
        print("wrote", p)
    print(latency.markdown(results))


if __name__ == "__main__":
    main()
