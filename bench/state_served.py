"""What `[state]` adds to a whole served request, end to end over HTTP: two `llmrouter serve`
processes on the same table and key file, one with `[state]` on a redis-server, one without,
asked in turns by one client, so that whatever else the machine does weighs on both alike.

    .venv/bin/python bench/state_served.py [--requests 1500]

Every request uses each shared feature: an API key with a budget and rate limits, the spend
ledger per key and tier, the escalation window, a session. Its route is pinned (the key may pin),
so the router model is not asked and what differs is the state alone. Each request's session is
either one this server answered lately (the same session every time) or one it never saw (read
from Redis). Conditions: requests back to back, and 2 ms and 10 ms idle between them (on this VM
an idle vCPU halts at once, and waking it is what a round trip costs). Writes
bench/results/state_served.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import tomli_w

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from llmrouter_bench import load, measure  # noqa: E402
from scale_out import start, table  # noqa: E402

GAPS_S = (0.0, 0.002, 0.01)
# (name, server, session): the session is the same every time ("here") or new every time ("new")
CALLS = (("state, session served here", "state", "here"), ("state, session new here", "state", "new"),
         ("local", "local", "here"))


def servers(tmp: Path, redis_url: str, emu_url: str, env: dict[str, str]) -> tuple[dict[str, str], list[Any], str]:
    """The two servers' URLs (state, local), their processes, and the key's secret."""
    from llmrouter.server.auth import KeyStore

    keys = tmp / "keys.json"
    secret, _ = KeyStore(keys).create("bench", tier="free", rpm=10**7, tpm=10**9, budget_usd=1e9, may_pin=True)
    urls, procs = {}, []
    for name, url in (("state", redis_url), ("local", None)):
        data = table(emu_url, url)
        data["budgets"]["per_key"] = 1e9  # far below every limit: what a request usually meets
        cfg = tmp / f"{name}.toml"
        cfg.write_text(tomli_w.dumps(data))
        port = load.free_port()
        procs.append(start([sys.executable, "-c", "from llmrouter.cli import main; main()", "serve", "--config",
                            str(cfg), "--keys", str(keys), "--port", str(port)], env))
        urls[name] = f"http://127.0.0.1:{port}"
    for proc, url in zip(procs, urls.values()):
        load.wait_up(f"{url}/healthz", proc)
    return urls, procs, secret


def in_turns(urls: dict[str, str], secret: str, n: int, gap_s: float) -> dict[str, list[float]]:
    """Each call's latency (ms), `n` each, in turns, `gap_s` idle after each (untimed)."""
    headers = {"authorization": f"Bearer {secret}", "x-llmrouter-pin": "translation"}
    times: dict[str, list[float]] = {name: [] for name, _, _ in CALLS}
    with httpx.Client(timeout=30) as client:
        for i in range(n + 20):  # the first 20 turns warm the connections up, untimed
            for name, server, session in CALLS:
                body = {"model": "router", "messages": [{"role": "user", "content": "translate hello"}],
                        "metadata": {"session": "s" if session == "here" else f"s{i}"}}
                t0 = time.perf_counter()
                r = client.post(f"{urls[server]}/v1/chat/completions", json=body, headers=headers)
                elapsed = (time.perf_counter() - t0) * 1000
                assert r.status_code == 200, r.text
                if i >= 20:
                    times[name].append(elapsed)
                if gap_s:
                    time.sleep(gap_s)
    return times


def run(n: int) -> dict[str, Any]:
    env = {**os.environ, "LLMROUTER_LOG_LEVEL": "error"}
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp, redis_port, emu_port = Path(tmp_s), load.free_port(), load.free_port()
        procs = [start(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no", "--dir", tmp_s], env),
                 start([sys.executable, "-m", "llmrouter.testing.emulator", "--port", str(emu_port), "--text", "ok"],
                       env)]
        try:
            emu_url = f"http://127.0.0.1:{emu_port}"
            load.wait_up(f"{emu_url}/healthz", procs[1])
            urls, served, secret = servers(tmp, f"redis://127.0.0.1:{redis_port}/0", emu_url, env)
            procs += served
            rows = []
            for gap in GAPS_S:
                print(f"{gap * 1000:g} ms idle between requests", flush=True)
                times = in_turns(urls, secret, n, gap)
                p50 = {name: measure.pct(v, 50) for name, v in times.items()}
                rows.append({"gap_ms": gap * 1000, "load_avg_1m": os.getloadavg()[0],
                             "p50_ms": p50, "p95_ms": {name: measure.pct(v, 95) for name, v in times.items()},
                             "added_p50_ms": {name: p50[name] - p50["local"] for name in p50 if name != "local"}})
            return {"rows": rows, "requests": n, "machine": {**measure.machine(),
                                                            "note": "redis, emulator, servers and client share the cores"}}
        finally:
            for p in reversed(procs):
                p.terminate()
                p.wait(20)


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = ["# What [state] adds to a served request, end to end", "",
             f"Machine: {m['cores']} cores ({m['cpu']}), no GPU; redis-server, the emulator, both servers and the "
             f"client on the same machine. {r['requests']} requests per cell, asked in turns; the route pinned "
             "(no model decision); an API key with a budget and rate limits, the spend ledger per key and tier, the "
             "escalation window and a session, all far below their limits. ms, p50 (p95):", "",
             "| idle between requests | without [state] | [state], session served here | added | "
             "[state], session new here (read from Redis) | added |", "|---|---|---|---|---|---|"]
    for row in r["rows"]:
        p50, p95, added = row["p50_ms"], row["p95_ms"], row["added_p50_ms"]
        here, new = "state, session served here", "state, session new here"
        lines.append(f"| {row['gap_ms']:g} ms (load average {row['load_avg_1m']:.1f}) | {p50['local']:.2f} "
                     f"({p95['local']:.2f}) | {p50[here]:.2f} ({p95[here]:.2f}) | **{added[here]:.2f}** | "
                     f"{p50[new]:.2f} ({p95[new]:.2f}) | **{added[new]:.2f}** |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1500, help="requests per cell")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    results = run(args.requests)
    for f in measure.write_results(results, Path(args.out), "state_served", markdown, lambda r, p: False):
        print(f"wrote {f}")
    print(markdown(results))


if __name__ == "__main__":
    main()
