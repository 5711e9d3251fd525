"""Load through `llmrouter serve`: 200 concurrent streamed requests, emulated providers, real sockets.

    .venv/bin/python bench/server_load.py [--concurrency 200] [--tokens 20] [--token-delay 0.01]

Starts the emulator and `llmrouter serve` as separate processes, then streams the same requests
three ways: straight to the emulator (the floor), through llmrouter with model=<target>
(proxying and fallback machinery only), and through llmrouter with model="router" (the real
router model decides each request, decision cache off). Checks that every request got exactly
one complete answer or one clear error and that no upstream call was duplicated, and reports
throughput and time-to-first-token / total latency, p50 and p95. A sequential pass measures the
latency llmrouter adds to one request without queueing. Writes bench/results/server_load.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from llmrouter.config import Config

HERE = Path(__file__).resolve().parent
DEV = HERE.parent.parent / "shared" / "eval" / "task-routing-dev.jsonl"
ROOT = HERE.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prompts(n: int) -> list[str]:
    """Distinct prompts (real ones from the shared dev set when present), each tagged with its index."""
    base = []
    if DEV.exists():
        base = [json.loads(line)["prompt"] for line in DEV.read_text().splitlines() if line.strip()]
    base = base or ["Explain TCP slow start", "Write a haiku about rain", "What is 17 * 23?"]
    return [f"[{i}] {base[i % len(base)][:300]}" for i in range(n)]


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


async def one(client: httpx.AsyncClient, url: str, model: str, prompt: str, expect: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    first = None
    text, ended = [], None
    try:
        async with client.stream("POST", url, json={"model": model, "stream": True,
                                                    "messages": [{"role": "user", "content": prompt}]}) as r:
            source = r.headers.get("x-llmrouter-source", "-")
            if r.status_code != 200:
                return {"outcome": f"http_{r.status_code}", "total": time.perf_counter() - t0, "source": source}
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    ended = "done"
                    break
                event = json.loads(data)
                if "error" in event:
                    ended = "error"
                    break
                piece = (event["choices"][0]["delta"].get("content") or "") if event.get("choices") else ""
                if piece and first is None:
                    first = time.perf_counter() - t0
                text.append(piece)
    except httpx.HTTPError as exc:
        return {"outcome": f"client_{type(exc).__name__}", "total": time.perf_counter() - t0}
    answer = "".join(text)
    if ended == "done":
        outcome = "ok" if answer == expect else "wrong_answer"
    else:
        outcome = "stream_error" if ended == "error" else "truncated_without_error"
    return {"outcome": outcome, "ttft": first, "total": time.perf_counter() - t0, "source": source}


async def wave(url: str, model: str, texts: list[str], answer_of: Any, concurrency: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=concurrency + 10, max_keepalive_connections=concurrency + 10)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def gated(t: str) -> dict[str, Any]:
            async with gate:
                return await one(client, url, model, t, answer_of(t))

        t0 = time.perf_counter()
        results = await asyncio.gather(*(gated(t) for t in texts))
        wall = time.perf_counter() - t0
    return summarize(results, wall)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)


def summarize(results: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    outcomes: dict[str, int] = {}
    sources: dict[str, int] = {}
    for r in results:
        outcomes[r["outcome"]] = outcomes.get(r["outcome"], 0) + 1
        sources[r.get("source", "-")] = sources.get(r.get("source", "-"), 0) + 1
    ttft = [r["ttft"] for r in results if r.get("ttft") is not None]
    total = [r["total"] for r in results if r["outcome"] == "ok"]
    return {"requests": len(results), "outcomes": outcomes, "decided_by": sources, "wall_s": round(wall, 3),
            "throughput_rps": round(len(results) / wall, 1),
            "ttft_p50_ms": pct(ttft, 0.5), "ttft_p95_ms": pct(ttft, 0.95),
            "total_p50_ms": pct(total, 0.5), "total_p95_ms": pct(total, 0.95),
            "mean_total_ms": round(statistics.fmean(total) * 1000, 1) if total else None}


def write_config(emu_url: str, path: Path) -> None:
    data = Config.load().to_dict()
    data["router"]["cache"] = False  # every routed request asks the model: the honest cost
    data["targets"] = {n: {"provider": "openai", "model": n, "base_url": f"{emu_url}/{n}/v1"} for n in ("a", "b")}
    for route in data["routes"]:
        route["targets"] = ["a", "b"]
    import tomli_w

    path.write_text(tomli_w.dumps(data))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concurrency", type=int, default=200)
    ap.add_argument("--requests", type=int, default=None, help="default: = concurrency")
    ap.add_argument("--tokens", type=int, default=20, help="words per emulated answer")
    ap.add_argument("--token-delay", type=float, default=0.01)
    ap.add_argument("--sequential", type=int, default=40)
    ap.add_argument("--decide-wait", type=float, default=5.0, help="serve --decide-wait (0: always wait)")
    args = ap.parse_args()
    n = args.requests or args.concurrency
    answer_text = " ".join(f"w{i}" for i in range(args.tokens))
    emu_port, srv_port = free_port(), free_port()
    emu_url, srv_url = f"http://127.0.0.1:{emu_port}", f"http://127.0.0.1:{srv_port}"
    env = {**os.environ, "LLMROUTER_LOG_LEVEL": "error", "PYTHONUNBUFFERED": "1"}
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "routes.toml"
        write_config(emu_url, cfg)
        try:
            procs.append(subprocess.Popen([sys.executable, "-m", "llmrouter.testing.emulator", "--port", str(emu_port),
                                           "--token-delay", str(args.token_delay), "--text", answer_text],
                                          env=env, stdout=subprocess.DEVNULL))
            wait_up(f"{emu_url}/healthz", procs[-1])
            cli = [sys.executable, "-c", "from llmrouter.cli import main; main()"]
            procs.append(subprocess.Popen(cli + ["serve", "--config", str(cfg),
                                           "--port", str(srv_port), "--deadline", "120",
                                           "--decide-wait", str(args.decide_wait)], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT))
            wait_up(f"{srv_url}/healthz", procs[-1])
            results = asyncio.run(run_all(emu_url, srv_url, n, args, answer_text))
        finally:
            for p in procs:
                p.terminate()
                p.wait(10)
    results["machine"] = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "python": platform.python_version(), "note": "emulator, server and client share the cores"}
    results["settings"] = vars(args) | {"requests": n}
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / "server_load.json").write_text(json.dumps(results, indent=2))
    (out / "server_load.md").write_text(markdown(results))
    print(markdown(results))


async def run_all(emu_url: str, srv_url: str, n: int, args: Any, answer_text: str) -> dict[str, Any]:
    texts = prompts(n)
    answer = lambda _t: answer_text  # noqa: E731
    c = args.concurrency
    await httpx.AsyncClient().post(f"{emu_url}/_emulator/reset")
    runs = {
        "direct to emulator": await wave(f"{emu_url}/a/v1/chat/completions", "a", texts, answer, c),
        "llmrouter, model=a (no routing)": await wave(f"{srv_url}/v1/chat/completions", "a", texts, answer, c),
    }
    async with httpx.AsyncClient() as client:
        upstream_before = len((await client.get(f"{emu_url}/_emulator/seen/a")).json())
    runs["llmrouter, model=router (model decides)"] = await wave(
        f"{srv_url}/v1/chat/completions", "router", texts, answer, c)
    async with httpx.AsyncClient() as client:
        upstream = len((await client.get(f"{emu_url}/_emulator/seen/a")).json()) - upstream_before
    seq = texts[: args.sequential]
    sequential = {
        "direct to emulator": await wave(f"{emu_url}/a/v1/chat/completions", "a", seq, answer, 1),
        "llmrouter, model=a (no routing)": await wave(f"{srv_url}/v1/chat/completions", "a", seq, answer, 1),
        "llmrouter, model=router (model decides)": await wave(f"{srv_url}/v1/chat/completions", "router", seq, answer, 1),
    }
    d = sequential["direct to emulator"]
    added = {k: {"ttft_p50_ms": round(v["ttft_p50_ms"] - d["ttft_p50_ms"], 1),
                 "ttft_p95_ms": round(v["ttft_p95_ms"] - d["ttft_p95_ms"], 1)}
             for k, v in sequential.items() if k != "direct to emulator"}
    return {"concurrent": runs, "upstream_calls_for_routed_wave": upstream, "sequential": sequential,
            "added_latency_sequential": added}


def _fmt(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def markdown(r: dict[str, Any]) -> str:
    s = r.get("settings", {})
    lines = [f"# Server load: {s.get('requests')} streamed requests, concurrency {s.get('concurrency')}", "",
             f"Machine: {r.get('machine', {}).get('cores')} cores ({r.get('machine', {}).get('cpu')}), no GPU; "
             "emulator, server and client on the same machine. Emulated answer: "
             f"{s.get('tokens')} tokens, {s.get('token_delay')}s apart.", "",
             f"serve --decide-wait {s.get('decide_wait')}s: past it, a request waiting for the router model "
             "takes the default route (source=default).", "",
             "| path | outcomes | decided by | throughput (req/s) | TTFT p50 / p95 (ms) | total p50 / p95 (ms) |",
             "|---|---|---|---|---|---|"]
    for name, v in r["concurrent"].items():
        lines.append(f"| {name} | {_fmt(v['outcomes'])} | {_fmt(v['decided_by'])} | {v['throughput_rps']} "
                     f"| {v['ttft_p50_ms']} / {v['ttft_p95_ms']} | {v['total_p50_ms']} / {v['total_p95_ms']} |")
    lines += ["", f"Upstream calls during the routed wave: {r['upstream_calls_for_routed_wave']} "
              f"(requests: {s.get('requests')}; equal means nothing lost or duplicated).", "",
              f"## One request at a time ({s.get('sequential')} requests)", "",
              "| path | TTFT p50 / p95 (ms) | added vs direct, p50 / p95 (ms) |", "|---|---|---|"]
    for name, v in r["sequential"].items():
        add = r["added_latency_sequential"].get(name)
        extra = f"{add['ttft_p50_ms']} / {add['ttft_p95_ms']}" if add else "-"
        lines.append(f"| {name} | {v['ttft_p50_ms']} / {v['ttft_p95_ms']} | {extra} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
