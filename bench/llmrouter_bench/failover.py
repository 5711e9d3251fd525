"""Failover as a client of `llmrouter serve` meets it: one route per provider fault, each
[faulty primary, healthy fallback], requests pinned to the route, streamed and not.

Starts the emulator and `llmrouter serve` (real sockets, the real router model loaded, though
pins decide) once with mid-stream continuation on and once with it off (the behaviour before it
existed). Breakers are set never to open, so every request meets its fault. Per fault, kind and
mode it reports how requests ended: the complete answer, one clear error, or a truncated
"success" (must be 0); the time to the whole answer against the deadline; who answered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from llmrouter_bench import measure
from llmrouter_bench.load import _cpu, free_port, wait_up

TEXT = " ".join(f"w{i}" for i in range(60))
DEADLINE_S = 10.0
FALLBACK = {"deadline_s": DEADLINE_S, "max_retries": 2, "backoff_base_s": 0.05, "retry_after_cap_s": 2,
            "first_token_timeout_s": 2, "stream_idle_timeout_s": 2, "breaker_failures": 100000}
BOTH, STREAM, COMPLETE = ("stream", "complete"), ("stream",), ("complete",)
FAULTS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "429, Retry-After 0.3 s": ({"status": 429, "retry_after": 0.3}, BOTH),
    "429, Retry-After 120 s": ({"status": 429, "retry_after": 120}, BOTH),
    "429, no Retry-After": ({"status": 429}, BOTH),
    "500s": ({"status": 500}, BOTH),
    "503s": ({"status": 503}, BOTH),
    "connection reset": ({"reset": True}, BOTH),
    "silent (accepts, never answers)": ({"hang": True}, BOTH),
    "first token after 5 s": ({"token_delay_s": 5}, STREAM),
    "response after 5 s": ({"latency_s": 5}, COMPLETE),
    "cut after 40 tokens": ({"cut_after": 40}, STREAM),
    "stall after 40 tokens": ({"stall_after": 40}, STREAM),
    "malformed chunk after 40 tokens": ({"malformed_after": 40}, STREAM),
    "clean end after 40 tokens, no [DONE]": ({"end_after": 40}, STREAM),
    "whole answer, no [DONE]": ({"no_done": True}, STREAM),
    "another model name": ({"model": "someone-else"}, BOTH),
    "400": ({"status": 400}, BOTH),
}
REJECTS = "cut after 40, first fallback refuses the prefill"


def table(emu_url: str, continue_streams: bool) -> dict[str, Any]:
    """One route per fault: [f<i>, ok] (the prefill case: [f<i>, refuser, ok])."""
    targets: dict[str, Any] = {n: {"provider": "openai", "model": n, "base_url": f"{emu_url}/{n}/v1",
                                   "timeout_s": 30, "prefill": True} for n in ("ok", "refuser")}
    routes = []
    for i, name in enumerate([*FAULTS, REJECTS]):
        targets[f"f{i}"] = {"provider": "openai", "model": f"f{i}", "base_url": f"{emu_url}/f{i}/v1", "timeout_s": 30}
        chain = [f"f{i}", "refuser", "ok"] if name == REJECTS else [f"f{i}", "ok"]
        routes.append({"name": f"r{i}", "description": f"requests that meet the fault: {name}", "targets": chain})
    return {"router": {"default_route": "r0", "cache": False},
            "fallback": {**FALLBACK, "continue_streams": continue_streams}, "targets": targets, "routes": routes,
            "rules": [{"name": "pins", "when": {"pin": [r["name"] for r in routes]}, "then": {"use_pin": True}}]}


def script(emu_url: str) -> None:
    with httpx.Client(timeout=5) as c:
        for name in ("ok", "refuser"):
            c.post(f"{emu_url}/_emulator/script", json={"name": name, "default": {
                "text": TEXT, "prefill": name == "ok"}}).raise_for_status()
        for i, name in enumerate([*FAULTS, REJECTS]):
            fault = FAULTS[name][0] if name in FAULTS else {"cut_after": 40}
            c.post(f"{emu_url}/_emulator/script", json={"name": f"f{i}", "default": {**fault, "text": TEXT}}
                   ).raise_for_status()


def ask(client: httpx.Client, url: str, route: str, stream: bool) -> dict[str, Any]:
    """How one request ended: complete / error / truncated, its time, and who answered."""
    body = {"model": "router", "messages": [{"role": "user", "content": "count"}], "stream": stream}
    t0 = time.perf_counter()
    try:
        r = client.post(f"{url}/v1/chat/completions", json=body, headers={"x-llmrouter-pin": route})
    except httpx.HTTPError as exc:
        return {"end": "error", "s": time.perf_counter() - t0, "by": "", "why": type(exc).__name__}
    s = time.perf_counter() - t0
    if r.status_code != 200:
        return {"end": "error", "s": s, "by": "", "why": f"HTTP {r.status_code}"}
    if not stream:
        text = r.json()["choices"][0]["message"]["content"]
        return {"end": "complete" if text == TEXT else "truncated", "s": s, "by": r.headers["x-llmrouter-target"]}
    return _stream_end(r.text, s, r.headers["x-llmrouter-target"])


def _stream_end(raw: str, s: float, first: str) -> dict[str, Any]:
    events = [b.removeprefix("data: ") for b in raw.strip().split("\n\n")]
    if events[-1] != "[DONE]":
        return {"end": "error", "s": s, "by": first, "why": "error event"}
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c.get("choices"))
    by = next((c["llmrouter"]["continued_by"] for c in chunks if "llmrouter" in c), None)
    return {"end": "complete" if text == TEXT else "truncated", "s": s,
            "by": f"{first} -> {by}" if by else first}


def run_mode(continue_streams: bool, repeats: int, progress: Any = None) -> list[dict[str, Any]]:
    emu_port, srv_port = free_port(), free_port()
    emu_url, srv_url = f"http://127.0.0.1:{emu_port}", f"http://127.0.0.1:{srv_port}"
    env = {**os.environ, "LLMROUTER_LOG_LEVEL": "error", "PYTHONUNBUFFERED": "1"}
    procs: list[subprocess.Popen[bytes]] = []
    import tomli_w

    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "failover.toml"
        cfg.write_text(tomli_w.dumps(table(emu_url, continue_streams)))
        try:
            procs.append(subprocess.Popen([sys.executable, "-m", "llmrouter.testing.emulator", "--port",
                                           str(emu_port)], env=env, stdout=subprocess.DEVNULL))
            wait_up(f"{emu_url}/healthz", procs[-1])
            script(emu_url)
            procs.append(subprocess.Popen([sys.executable, "-c", "from llmrouter.cli import main; main()", "serve",
                                           "--config", str(cfg), "--port", str(srv_port)],
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_up(f"{srv_url}/healthz", procs[-1])
            return _sweep(srv_url, continue_streams, repeats, progress)
        finally:
            for p in procs:
                p.terminate()
                p.wait(10)


def _sweep(url: str, continue_streams: bool, repeats: int, progress: Any) -> list[dict[str, Any]]:
    rows = []
    with httpx.Client(timeout=DEADLINE_S * 3) as client:
        for i, name in enumerate([*FAULTS, REJECTS]):
            for kind in (FAULTS[name][1] if name in FAULTS else STREAM):
                ends = [ask(client, url, f"r{i}", kind == "stream") for _ in range(repeats)]
                times = [e["s"] * 1000 for e in ends]
                rows.append({"fault": name, "kind": kind, "continuation": continue_streams,
                             **{k: sum(e["end"] == k for e in ends) for k in ("complete", "error", "truncated")},
                             "p50_ms": round(measure.pct(times, 50), 1), "max_ms": round(max(times), 1),
                             "answered_by": dict(Counter(e["by"] for e in ends if e["end"] == "complete")),
                             "errors": dict(Counter(e.get("why", "") for e in ends if e["end"] == "error"))})
                if progress:
                    progress()
    return rows


def cases() -> int:
    return sum(len(kinds) for _, kinds in FAULTS.values()) + 1


def run(repeats: int = 5, progress: Any = None) -> dict[str, Any]:
    rows = run_mode(True, repeats, progress) + run_mode(False, repeats, progress)
    return {"rows": rows, "settings": {"repeats": repeats, "deadline_s": DEADLINE_S, "fallback": FALLBACK,
                                       "answer_tokens": 60},
            "machine": {"cpu": _cpu(), "cores": os.cpu_count(),
                        "note": "emulator, server and client share the cores"}}


def markdown(r: dict[str, Any]) -> str:
    s, m = r["settings"], r["machine"]
    out = ["# Failover through `llmrouter serve` (bench/failover.py)", "",
           f"Machine: {m['cpu']}, {m['cores']} cores ({m['note']}). {s['repeats']} requests per row, "
           f"deadline {s['deadline_s']:g} s, first-token and stall limits 2 s, answers of {s['answer_tokens']} "
           "words; each route is [faulty primary, healthy fallback that accepts a prefill].", "",
           "| fault | kind | continuation | complete | error | truncated | p50 ms | max ms | answered by |",
           "|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        by = ", ".join(f"{k} x{v}" for k, v in row["answered_by"].items()) or "; ".join(row["errors"])
        out.append(f"| {row['fault']} | {row['kind']} | {'on' if row['continuation'] else 'off'} | "
                   f"{row['complete']} | {row['error']} | {row['truncated']} | {row['p50_ms']:.0f} | "
                   f"{row['max_ms']:.0f} | {by} |")
    return "\n".join(out) + "\n"


def plot(_r: dict[str, Any], _path: Path) -> bool:
    return False  # a table reads better here
