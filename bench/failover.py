"""Failover through `llmrouter serve`: every provider fault the emulator can produce, one route
each ([faulty primary, healthy fallback]), streamed and not, with mid-stream continuation on and
off. The measuring code is bench/llmrouter_bench/failover.py.

    .venv/bin/python bench/failover.py [--repeats 5]

Writes bench/results/failover.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from llmrouter_bench import failover, measure  # noqa: E402
from rich.progress import Progress  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5, help="requests per fault, kind and mode")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    with Progress() as bar:
        task = bar.add_task("faults", total=2 * failover.cases())
        results = failover.run(args.repeats, lambda: bar.advance(task))
    for f in measure.write_results(results, Path(args.out), "failover", failover.markdown, failover.plot):
        print(f"wrote {f}")
    print(failover.markdown(results))


if __name__ == "__main__":
    main()
