"""Routing under load: `llmrouter serve` against emulated providers at several concurrency levels.

Starts the emulator and `llmrouter serve` as separate processes (real sockets), with the route
table's targets pointed at the emulator, the decision cache on, and a rule that honours pins.
Per level it streams a mix of requests through `model="router"`:

    20%  pinned (x-llmrouter-pin): a rule decides, the model is never asked
    10%  repeats of prompts decided before the run: the decision cache answers
    70%  fresh prompts: the cheap stage where it is confident, else the router model; past
         decide_wait_s the cheap stage's decision

and the same requests straight to the emulator (the floor). It reports who decided (model, cheap
stage, rule, cache, default), decisions per second, and the latency llmrouter adds to the first
token (p50/p95 against the floor at the same level), checks that every request got exactly one
complete answer, and writes load.{json,md,png}.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
from llmrouter_bench import measure

from llmrouter.config import Config

SOURCES = ("model", "cheap", "rule", "cache", "default")
PINNED_EVERY, REPEAT_EVERY = (0, 5), (2,)  # i % 10 in these: pinned; repeated
WARM = 20  # prompts decided before the levels run (those the model decided are cached)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_prompts(data: str | None) -> list[str]:
    """Real prompts from a JSONL file when given (the shared dev set in a checkout), else samples."""
    if data and Path(data).is_file():
        texts = [json.loads(line)["prompt"] for line in Path(data).read_text("utf-8").splitlines() if line.strip()]
        if texts:
            return texts
    return list(measure.SAMPLE_REQUESTS)


def write_config(config_path: str | None, emu_url: str, cache_dir: Path, workers: int, path: Path) -> None:
    data = Config.load(config_path).to_dict()
    data["router"].update(cache=True, cache_dir=str(cache_dir))
    if workers > 1:
        data["router"]["workers"] = workers
    data["targets"] = {n: {"provider": "openai", "model": n, "base_url": f"{emu_url}/{n}/v1"} for n in ("a", "b")}
    names = [r["name"] for r in data["routes"]]
    for route in data["routes"]:
        route["targets"] = ["a", "b"]
    data["rules"] = [{"name": "pins", "when": {"pin": names}, "then": {"use_pin": True}}] + data.get("rules", [])
    import tomli_w

    path.write_text(tomli_w.dumps(data))


def wait_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args!r} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


async def one(client: httpx.AsyncClient, url: str, model: str, prompt: str, expect: str,
              headers: dict[str, str]) -> dict[str, Any]:
    """One streamed request: its outcome, time to first token, total time and who decided."""
    t0 = time.perf_counter()
    first, text, ended = None, [], None
    body = {"model": model, "stream": True, "messages": [{"role": "user", "content": prompt}]}
    try:
        async with client.stream("POST", url, json=body, headers=headers) as r:
            source = r.headers.get("x-llmrouter-source", "-")
            if r.status_code != 200:
                return {"outcome": f"http_{r.status_code}", "total": time.perf_counter() - t0, "source": source}
            async for line in r.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line[6:] == "[DONE]":
                    ended = "done"
                    break
                event = json.loads(line[6:])
                if "error" in event:
                    ended = "error"
                    break
                piece = (event["choices"][0]["delta"].get("content") or "") if event.get("choices") else ""
                if piece and first is None:
                    first = time.perf_counter() - t0
                text.append(piece)
    except httpx.HTTPError as exc:
        return {"outcome": f"client_{type(exc).__name__}", "total": time.perf_counter() - t0}
    outcome = ("ok" if "".join(text) == expect else "wrong_answer") if ended == "done" else (
        "stream_error" if ended == "error" else "truncated_without_error")
    return {"outcome": outcome, "ttft": first, "total": time.perf_counter() - t0, "source": source}


async def wave(url: str, model: str, jobs: list[tuple[str, dict[str, str]]], expect: str, concurrency: int
               ) -> tuple[list[dict[str, Any]], float]:
    limits = httpx.Limits(max_connections=concurrency + 10, max_keepalive_connections=concurrency + 10)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def gated(text: str, headers: dict[str, str]) -> dict[str, Any]:
            async with gate:
                return await one(client, url, model, text, expect, headers)

        t0 = time.perf_counter()
        results = await asyncio.gather(*(gated(t, h) for t, h in jobs))
        return list(results), time.perf_counter() - t0


def pct(seconds: list[float], q: float) -> float | None:
    """The q-th percentile (0..1) of times in seconds, in ms (measure.pct's convention); None when empty."""
    return round(measure.pct([s * 1000 for s in seconds], q * 100), 1) if seconds else None


def level_jobs(level: int, n: int, prompts: list[str], warm: list[str], routes: Sequence[str]
               ) -> list[tuple[str, dict[str, str]]]:
    """The level's requests: pinned, repeated (cached) and fresh, interleaved."""
    jobs = []
    for i in range(n):
        if i % 10 in PINNED_EVERY:
            jobs.append((f"[c{level} #{i}] {prompts[i % len(prompts)][:300]}",
                         {"x-llmrouter-pin": routes[i % len(routes)]}))
        elif i % 10 in REPEAT_EVERY:
            jobs.append((warm[(i // 10) % len(warm)], {}))
        else:
            jobs.append((f"[c{level} #{i}] {prompts[i % len(prompts)][:300]}", {}))
    return jobs


def summarize(level: int, routed: list[dict[str, Any]], wall: float, direct: list[dict[str, Any]]) -> dict[str, Any]:
    sources = Counter(r.get("source", "-") for r in routed)
    ttft = [r["ttft"] for r in routed if r.get("ttft") is not None]
    floor = [r["ttft"] for r in direct if r.get("ttft") is not None]
    out: dict[str, Any] = {
        "concurrency": level, "requests": len(routed),
        "outcomes": dict(Counter(r["outcome"] for r in routed)),
        "share": {s: round(sources.get(s, 0) / len(routed), 4) for s in SOURCES},
        "decided": {s: sources.get(s, 0) for s in SOURCES},
        "wall_s": round(wall, 3),
        "decisions_per_s": round(len(routed) / wall, 1),
        "model_decisions_per_s": round(sources.get("model", 0) / wall, 1),
        "ttft_p50_ms": pct(ttft, 0.5), "ttft_p95_ms": pct(ttft, 0.95),
        "floor_ttft_p50_ms": pct(floor, 0.5), "floor_ttft_p95_ms": pct(floor, 0.95),
    }
    if out["ttft_p50_ms"] is not None and out["floor_ttft_p50_ms"] is not None:
        out["added_p50_ms"] = round(out["ttft_p50_ms"] - out["floor_ttft_p50_ms"], 1)
        out["added_p95_ms"] = round(out["ttft_p95_ms"] - out["floor_ttft_p95_ms"], 1)
    return out


async def sweep(emu_url: str, srv_url: str, levels: list[int], prompts: list[str], routes: Sequence[str],
                expect: str, per_level: Callable[[int], int], progress: Callable[[str], None]) -> list[dict[str, Any]]:
    warm = [f"[warm #{i}] {prompts[(i * 7) % len(prompts)][:300]}" for i in range(WARM)]
    decided, _ = await wave(f"{srv_url}/v1/chat/completions", "router", [(w, {}) for w in warm], expect, 1)
    warm = [w for w, r in zip(warm, decided) if r.get("source") == "model"] or warm  # the ones now cached
    out = []
    for level in levels:
        jobs = level_jobs(level, per_level(level), prompts, warm, routes)
        direct, _ = await wave(f"{emu_url}/a/v1/chat/completions", "a", jobs, expect, level)
        routed, wall = await wave(f"{srv_url}/v1/chat/completions", "router", jobs, expect, level)
        out.append(summarize(level, routed, wall, direct))
        progress(f"concurrency {level}: {out[-1]['decided']}")
    return out


def run(config_path: str | None, levels: list[int], *, data: str | None = None, workers: int = 1,
        decide_wait: float = 5.0, tokens: int = 20, token_delay: float = 0.01, min_requests: int = 40,
        progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Start the emulator and a server, run every level, stop them; the results."""
    expect = " ".join(f"w{i}" for i in range(tokens))
    emu_port, srv_port = free_port(), free_port()
    emu_url, srv_url = f"http://127.0.0.1:{emu_port}", f"http://127.0.0.1:{srv_port}"
    env = {**os.environ, "LLMROUTER_LOG_LEVEL": "error", "PYTHONUNBUFFERED": "1"}
    table = Config.load(config_path)
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "routes.toml"
        write_config(config_path, emu_url, Path(tmp) / "decisions", workers, cfg)
        try:
            procs.append(subprocess.Popen([sys.executable, "-m", "llmrouter.testing.emulator", "--port",
                                           str(emu_port), "--token-delay", str(token_delay), "--text", expect],
                                          env=env, stdout=subprocess.DEVNULL))
            wait_up(f"{emu_url}/healthz", procs[-1])
            procs.append(subprocess.Popen([sys.executable, "-c", "from llmrouter.cli import main; main()", "serve",
                                           "--config", str(cfg), "--port", str(srv_port), "--deadline", "300",
                                           "--decide-wait", str(decide_wait)],
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_up(f"{srv_url}/healthz", procs[-1])
            levels_out = asyncio.run(sweep(emu_url, srv_url, levels, base_prompts(data), table.table.names, expect,
                                           lambda c: max(2 * c, min_requests), progress))
        finally:
            for p in procs:
                p.terminate()
                p.wait(10)
    return {
        "levels": levels_out,
        "settings": {"config": config_path or "default", "workers": workers, "decide_wait_s": decide_wait,
                     "tokens": tokens, "token_delay_s": token_delay, "mode": table.router.mode,
                     "max_batch": getattr(table.router, "batch_limit", 1), "threads": table.router.threads},
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "note": "emulator, server and client share the cores"},
    }


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def markdown(r: dict[str, Any]) -> str:
    s, m = r["settings"], r["machine"]
    lines = [
        "# Routing under load", "",
        f"Machine: {m['cores']} cores ({m['cpu']}), no GPU; emulator, server and client on the same machine. "
        f"Table: {s['config']} (mode {s['mode']}), {s['workers']} decider worker(s) with {s['threads']} thread(s), "
        f"batches of up to {s['max_batch']}, decide_wait_s {s['decide_wait_s']}.", "",
        "Requests per level: max(2 x concurrency, 40); 20% pinned by header (a rule decides), 10% repeats "
        "(the cache), 70% fresh. Added latency: time to first token through llmrouter minus straight to "
        "the emulator, same requests and concurrency.", "",
        "| concurrency | requests | model | cheap stage | rule | cache | default | decisions/s | model decisions/s "
        "| added p50 / p95 (ms) | outcomes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in r["levels"]:
        share = " | ".join(f"{lv['share'][x]:.0%}" for x in SOURCES)
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(lv["outcomes"].items()))
        lines.append(f"| {lv['concurrency']} | {lv['requests']} | {share} | {lv['decisions_per_s']} "
                     f"| {lv['model_decisions_per_s']} | {lv.get('added_p50_ms')} / {lv.get('added_p95_ms')} "
                     f"| {outcomes} |")
    return "\n".join(lines) + "\n"


def plot(r: dict[str, Any], path: Path) -> bool:
    """Stacked shares by source per level, and the added latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = [str(lv["concurrency"]) for lv in r["levels"]]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    bottom = [0.0] * len(levels)
    for src in SOURCES:
        vals = [lv["share"][src] for lv in r["levels"]]
        a.bar(levels, vals, bottom=bottom, label=src)
        bottom = [x + y for x, y in zip(bottom, vals)]
    a.set(xlabel="concurrent requests", ylabel="share of requests", title="who decided")
    a.legend(fontsize=8)
    for key, label in (("added_p50_ms", "p50"), ("added_p95_ms", "p95")):
        b.plot(levels, [lv.get(key) or 0 for lv in r["levels"]], marker="o", label=label)
    b.set(xlabel="concurrent requests", ylabel="ms", title="latency added to the first token")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(r: dict[str, Any], out: Path, name: str = "load") -> list[Path]:
    return measure.write_results(r, out, name, markdown, plot)
