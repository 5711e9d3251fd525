"""Routing under load through `llmrouter serve`, at several concurrency levels (real sockets,
emulated providers, the real router model).

    .venv/bin/python bench/server_load.py [--concurrency 1,8,32,200] [--workers 1] [--decide-wait 5]

The same as `llmrouter bench --concurrency 1,8,32,200`: per level, who decided (model, cheap
stage, rule, cache, default route), decisions per second, and the latency added to the first
token. The measuring code is bench/llmrouter_bench/load.py. Writes bench/results/server_load.{json,md,png}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEV = HERE.parent.parent / "shared" / "eval" / "task-routing-dev.jsonl"
sys.path.insert(0, str(HERE))

from llmrouter_bench import load  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concurrency", default="1,8,32,200", help="comma-separated levels")
    ap.add_argument("--config", default=None, help="route table (default: the packaged one)")
    ap.add_argument("--workers", type=int, default=1, help="[router] workers for the server")
    ap.add_argument("--decide-wait", type=float, default=5.0, help="serve --decide-wait")
    ap.add_argument("--tokens", type=int, default=20, help="words per emulated answer")
    ap.add_argument("--token-delay", type=float, default=0.01)
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--name", default="server_load")
    args = ap.parse_args()
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    results = load.run(args.config, levels, data=str(DEV), workers=args.workers, decide_wait=args.decide_wait,
                       tokens=args.tokens, token_delay=args.token_delay)
    for f in load.write(results, Path(args.out), args.name):
        print(f"wrote {f}")
    print(load.markdown(results))


if __name__ == "__main__":
    main()
