"""Cold start of a whole `llmrouter route` process: this checkout against another revision.

    .venv/bin/python bench/cold_start.py --before REV [--runs 30]

Both run through this checkout's venv (PYTHONPATH picks the code: REV is checked out into a
temporary git worktree), interleaved and alternating which goes first, with the model pulled and
the KV prefix cached. Reports wall and CPU (user + sys) time per process, p50 and mean, and the
peak RSS. Writes bench/results/cold_start.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def run_once(tree: Path, i: int) -> dict[str, float]:
    exe = Path(sys.executable).with_name("llmrouter")
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(exe), "route", "--json", "--no-cache", f"Cold start probe {i}: write a limerick"],
                            env={**os.environ, "PYTHONPATH": str(tree)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = (time.perf_counter() - t0) * 1000
    if status:
        raise SystemExit(f"llmrouter route failed in {tree}: {proc.stderr.read().decode()[-400:] if proc.stderr else ''}")
    return {"wall_ms": wall, "cpu_ms": (usage.ru_utime + usage.ru_stime) * 1000, "rss_mb": usage.ru_maxrss / 1024}


def summary(rows: list[dict[str, float]]) -> dict[str, float]:
    return {f"{k}_{stat}": round(fn([r[k] for r in rows]), 1) for k in ("wall_ms", "cpu_ms")
            for stat, fn in (("p50", statistics.median), ("mean", statistics.fmean))} | {
        "rss_mb_max": round(max(r["rss_mb"] for r in rows), 1), "n": len(rows)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", required=True, help="the git revision to compare with")
    ap.add_argument("--runs", type=int, default=30)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(old), args.before], check=True)
        try:
            trees = {"before": old, "after": ROOT}
            rows: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
            for name in trees:  # warm-up: the first process may write the prefix and index caches
                run_once(trees[name], -1)
            for i in range(args.runs):
                order = list(trees) if i % 2 else list(reversed(trees))
                for name in order:
                    rows[name].append(run_once(trees[name], i))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)], check=False)
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    result = {"before_rev": args.before, "after_rev": head,
              "machine": {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()},
              "runs": args.runs, **{k: summary(v) for k, v in rows.items()}}
    md = ["# Cold start: `llmrouter route --json --no-cache`, whole process", "",
          f"Machine: {cpu}, {os.cpu_count()} cores. {args.runs} interleaved runs each; "
          f"before = {args.before}, after = {head} (with uncommitted changes, if any).", "",
          "| code | wall p50 | wall mean | CPU p50 | CPU mean | peak RSS |", "|---|---|---|---|---|---|"]
    for k in ("before", "after"):
        s = result[k]
        md.append(f"| {k} | {s['wall_ms_p50']:.0f} ms | {s['wall_ms_mean']:.0f} ms | {s['cpu_ms_p50']:.0f} ms | "
                  f"{s['cpu_ms_mean']:.0f} ms | {s['rss_mb_max']:.0f} MB |")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "cold_start.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "cold_start.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
