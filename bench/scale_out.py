"""Scale-out on one box: 1, 2 and 4 `llmrouter serve` processes sharing one redis-server, a
client spreading requests over them round-robin (the load balancer).

    .venv/bin/python bench/scale_out.py [--processes 1,2,4] [--requests 60] [--concurrency 8]

Per process count: throughput (model-decided requests/s), the p50/p95 of each kind of state call
(timed from this process on the same Redis while the servers are under load), how far a spend cap
is overshot with 8 requests in flight, the escalation cap's share across processes, and whether a
session stays on its route when its turns land on other processes. One run without [state] (2
processes) shows what the shared ledger prevents. Writes bench/results/scale_out.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import os
import subprocess
import sys
import tempfile
import itertools
import multiprocessing
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import tomli_w

HERE = Path(__file__).resolve().parent
DEV = HERE.parent.parent / "shared" / "eval" / "task-routing-dev.jsonl"
sys.path.insert(0, str(HERE))

from llmrouter_bench import load, measure  # noqa: E402

from llmrouter.config import Config, StateSettings  # noqa: E402
from llmrouter.state import SharedState  # noqa: E402
from llmrouter.state.aio import aread_all  # noqa: E402
from llmrouter.state.link import Read, batch_on, read_all  # noqa: E402

STRONG = ("code", "math", "reasoning")  # the costlier tier; every other route is the cheap one
MAX_RATE, CAP_USD, IN_FLIGHT = 0.2, 20.0, 8


def table(emu_url: str, redis_url: str | None) -> dict[str, Any]:
    data = Config.load().to_dict()
    data["router"]["cache"] = False  # every unpinned request is the model's
    data["targets"] = {"a": {"provider": "openai", "model": "a", "base_url": f"{emu_url}/a/v1",
                             "output_price": 1_000_000.0}}  # $1 per answer token: the answer is "ok"
    names = [r["name"] for r in data["routes"]]
    for route in data["routes"]:
        route["targets"], route["tier"] = ["a"], "strong" if route["name"] in STRONG else "cheap"
    data["rules"] = [{"name": "pins", "when": {"pin": names}, "then": {"use_pin": True}}]
    data["tiers"] = {"order": ["cheap", "strong"]}
    # min_confidence 0.99: nearly every model decision wants to go up a tier; the cap holds it to 20%
    data["escalation"] = {"min_confidence": 0.99, "max_rate": MAX_RATE, "min_requests": 20, "window_s": 600.0}
    data["budgets"] = {"per_key": CAP_USD, "per_tier": {"free": 1e9}, "on_cap": "reject", "window_s": 600.0}
    data["stickiness"] = {"enabled": True}
    if redis_url:
        data["state"] = {"url": redis_url}
    return data


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def post(client: httpx.AsyncClient, url: str, text: str, headers: dict[str, str] | None = None,
               metadata: dict[str, str] | None = None) -> httpx.Response:
    body: dict[str, Any] = {"model": "router", "messages": [{"role": "user", "content": text}]}
    if metadata:
        body["metadata"] = metadata
    return await client.post(f"{url}/v1/chat/completions", json=body, headers=headers or {})


async def spread(urls: list[str], jobs: list[dict[str, Any]], concurrency: int) -> list[httpx.Response]:
    """Each job on the next server round-robin, `concurrency` at a time."""
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(timeout=300) as client:
        async def one(i: int, job: dict[str, Any]) -> httpx.Response:
            async with sem:
                return await post(client, urls[i % len(urls)], **job)
        return list(await asyncio.gather(*(one(i, j) for i, j in enumerate(jobs))))


class WholeRequest:
    """What one routed request asks of the state: the policy before and after the model and its
    settling (escalation window, session, spend ledger), and the API key's meter (rates, budget)."""

    def __init__(self, data: dict[str, Any], keys_path: Path, state: SharedState | None, aio: bool = True,
                 session_here: bool = True) -> None:
        from llmrouter.policy.engine import RoutingPolicy
        from llmrouter.server.auth import KeyStore, Meter

        self.config = Config.from_dict(data)
        self.policy = RoutingPolicy(self.config, state=state)
        keys = KeyStore(keys_path)
        self.key = next(iter(keys.keys.values()))
        self.meter, self.target, self.n = Meter(keys, state), self.config.targets["a"], 0
        self.state, self.aio = state, aio  # aio: the waited read on the asyncio client, as the server does
        # session_here: its last turn was served by this process lately (read_ttl_s), else elsewhere or long ago
        self.session_here = session_here

    async def __call__(self) -> None:
        from llmrouter.types import Decision, Request

        self.n += 1
        # elsewhere: a session's next turn comes 1,000 requests later, past read_ttl_s: read from Redis
        session = "here" if self.session_here else f"s{self.n % 1000}"
        req = Request.of({"messages": [{"role": "user", "content": "hi"}],
                          "metadata": {"key": self.key.id, "session": session, "tier": "free"}})
        # as the server admits a request: the key's checks and the policy's read, together
        link = self.state.link if self.state else None
        reads: list[Read[Any]] = [self.meter.admission(self.key), self.policy.prefetch(req)]
        refusal, _ = await aread_all(link, reads) if self.aio else read_all(link, reads)
        assert refusal is None, refusal
        self.policy.before(req)
        self.policy.after(req, Decision(route="translation", source="model", confidence=0.5,
                                        scores={"translation": 0.5, "code": 0.5}))
        with batch_on(self.state.link if self.state else None):  # as the server settles
            self.policy.settle(req, self.target, 10, 1)
            self.meter.settle(self.key, 11, 0.000001)


class StateCalls:
    """Times each kind of state call from this process while the servers work."""

    def __init__(self, redis_url: str, data: dict[str, Any], keys_path: Path) -> None:
        self.state = SharedState(StateSettings(url=redis_url))
        big = {**data, "budgets": {**data["budgets"], "per_key": 1e9}}
        self.whole = {"whole request, [state]": WholeRequest(big, keys_path, self.state),
                      "whole request, [state], session served elsewhere": WholeRequest(
                          big, keys_path, self.state, session_here=False),
                      "whole request, local": WholeRequest(big, keys_path, None)}
        self.times: dict[str, list[float]] = {}
        self.routes = itertools.cycle(("code", "math"))  # a changed route: a real write every time
        w, esc = self.state.window("bench:w", 60.0), self.state.escalations("bench", 60.0)
        total, sessions = self.state.key_spend(), self.state.sessions("bench", 600.0, 1000)
        rpm, flag = self.state.request_rate("bench-rpm"), self.state.breaker_flag("bench")
        self.calls: dict[str, Callable[[], Any]] = {"rate limit admit (Lua)": lambda: rpm.admit("k", 10**9),
                      "escalation record (Lua)": lambda: esc.record("", True),
                      "window read (Lua; reused 0.1 s)": lambda: w.sums(["x"]),
                      "spend read (GET)": lambda: total.spent_usd("k"),
                      "spend charge (INCRBY)": lambda: total.charge("k", 0.001),
                      "session read (GET; reused 0.1 s)": lambda: sessions.get("s"),
                      "session write (SET PX)": lambda: sessions.set("s", next(self.routes)),
                      "breaker read (PTTL; reused 0.1 s)": lambda: flag.remaining(), **self.whole}

    def run(self, stop: Any) -> None:
        asyncio.run(self._run(stop))

    async def _run(self, stop: Any) -> None:
        while not stop.is_set():
            for name, call in self.calls.items():
                t0 = time.perf_counter()
                await waited(call())
                self.times.setdefault(name, []).append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(0.02)

    def summary(self) -> dict[str, dict[str, float]]:
        out = {k: {"n": len(v), "p50_ms": measure.pct(v, 50), "p95_ms": measure.pct(v, 95)}
               for k, v in self.times.items()}
        local = out["whole request, local"]
        for name, label in (("whole request, [state]", "added by [state] per request"),
                            ("whole request, [state], session served elsewhere", "added, session served elsewhere")):
            out[label] = {"n": 0, "p50_ms": out[name]["p50_ms"] - local["p50_ms"],
                          "p95_ms": out[name]["p95_ms"] - local["p95_ms"]}
        return out


async def waited(result: Any) -> Any:
    """A call's result, awaited when it is a coroutine (the whole request's admission is)."""
    return await result if inspect.isawaitable(result) else result


def time_state_calls(redis_url: str, data: dict[str, Any], keys_path: Path, stop: Any, out: Any) -> None:
    """In a process of its own (no GIL shared with the load client): time state calls until `stop`."""
    calls = StateCalls(redis_url, data, keys_path)
    calls.run(stop)
    summary = calls.summary()
    summary["_outages"] = {"n": calls.state.link.outages, "p50_ms": 0.0, "p95_ms": 0.0}  # must stay 0
    out.put(summary)


def phase_throughput(urls: list[str], prompts: list[str], n: int, redis_url: str,
                     data: dict[str, Any], keys_path: Path) -> dict[str, Any]:
    ctx = multiprocessing.get_context("fork")  # before any event loop or thread of this process
    stop, results = ctx.Event(), ctx.Queue()
    timer = ctx.Process(target=time_state_calls, args=(redis_url, data, keys_path, stop, results))
    timer.start()
    t0 = time.perf_counter()
    out = asyncio.run(spread(urls, [{"text": p} for p in prompts[:n]], IN_FLIGHT))
    elapsed = time.perf_counter() - t0
    stop.set()
    calls = results.get(timeout=120)
    timer.join(30)
    routes = [r.headers.get("x-llmrouter-route", "") for r in out if r.status_code == 200]
    up = sum(1 for r in routes if r in STRONG)
    return {"requests": n, "ok": len(routes), "seconds": round(elapsed, 2), "per_s": round(len(routes) / elapsed, 2),
            "escalated_share": round(up / max(1, len(routes)), 3), "max_rate": MAX_RATE,
            "state_calls": calls}


def phase_spend(urls: list[str]) -> dict[str, Any]:
    jobs = [{"text": f"translate {i}", "headers": {"x-llmrouter-pin": "translation"}, "metadata": {"user": "bench"}}
            for i in range(int(CAP_USD * 3))]
    out = asyncio.run(spread(urls, jobs, IN_FLIGHT))
    answered = sum(1 for r in out if r.status_code == 200)
    refused = sum(1 for r in out if r.status_code == 403 and "spend cap" in r.text)
    return {"cap_usd": CAP_USD, "usd_per_answer": 1.0, "in_flight": IN_FLIGHT, "answered": answered,
            "refused": refused, "spent_usd": float(answered), "overshoot_usd": max(0.0, answered - CAP_USD)}


def phase_sticky(urls: list[str], sessions: int = 12) -> dict[str, Any]:
    first = [{"text": "hello", "headers": {"x-llmrouter-pin": "translation"}, "metadata": {"session": f"s{i}"}}
             for i in range(sessions)]
    asyncio.run(spread(urls, first, IN_FLIGHT))
    # the next turn of each session lands on the next server; unpinned, the model would pick code
    urls_next = urls[1:] + urls[:1]
    nxt = [{"text": "Write a Python function that reverses a list", "metadata": {"session": f"s{i}"}}
           for i in range(sessions)]
    out = asyncio.run(spread(urls_next, nxt, IN_FLIGHT))
    kept = sum(1 for r in out if r.headers.get("x-llmrouter-route") == "translation")
    return {"sessions": sessions, "next_turn_on_another_process": len(urls) > 1, "kept_route": kept,
            "kept_share": round(kept / sessions, 3)}


def run_one(procs_n: int, redis_url: str | None, emu_url: str, prompts: list[str], requests: int,
            env: dict[str, str], tmp: Path) -> dict[str, Any]:
    cfg = tmp / f"routes-{procs_n}-{'shared' if redis_url else 'local'}.toml"
    cfg.write_text(tomli_w.dumps(table(emu_url, redis_url)))
    ports = [load.free_port() for _ in range(procs_n)]
    servers = [start([sys.executable, "-c", "from llmrouter.cli import main; main()", "serve", "--config", str(cfg),
                      "--port", str(p), "--deadline", "300", "--decide-wait", "30"], env) for p in ports]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        for u, s in zip(urls, servers):
            load.wait_up(f"{u}/healthz", s)
        row: dict[str, Any] = {"processes": procs_n, "shared_state": bool(redis_url)}
        if redis_url:  # first, on an empty escalation window: the share is of these decisions only
            keys_path = tmp / "keys.json"
            if not keys_path.exists():
                from llmrouter.server.auth import KeyStore

                KeyStore(keys_path).create("bench", tier="free", rpm=10**6, tpm=10**9, budget_usd=1e9)
            row["throughput"] = phase_throughput(urls, prompts, requests, redis_url, table(emu_url, redis_url),
                                                 keys_path)
            row["sticky"] = phase_sticky(urls)
        row["spend"] = phase_spend(urls)
        return row
    finally:
        for s in servers:
            s.terminate()
            s.wait(20)


async def state_round_trips(whole: WholeRequest, n: int = 100) -> tuple[float, float]:
    """Per request: round trips waited for (sync or asyncio client), and sends not waited for
    (the sender's), counted on the connections."""
    from redis.asyncio.connection import AbstractConnection as AsyncConnection
    from redis.connection import AbstractConnection

    from llmrouter.state.sender import MARK

    send, asend, counts = AbstractConnection.send_packed_command, AsyncConnection.send_packed_command, Counter[str]()

    def counted(self: Any, *args: Any, **kwargs: Any) -> None:
        counts["sent" if getattr(self, MARK, False) else "waited"] += 1
        send(self, *args, **kwargs)

    async def acounted(self: Any, *args: Any, **kwargs: Any) -> None:
        counts["waited"] += 1
        await asend(self, *args, **kwargs)

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    AsyncConnection.send_packed_command = acounted  # type: ignore[method-assign]
    await whole()  # the asyncio client connects on its first call: not counted
    try:
        for _ in range(n):
            await whole()
    finally:
        AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
        AsyncConnection.send_packed_command = asend  # type: ignore[method-assign]
    return counts["waited"] / n, counts["sent"] / n


@contextlib.contextmanager
def busy_core() -> Any:
    """One core kept busy by another process, as a server with traffic keeps its cores: on a VM an
    idle vCPU that Redis's answer must wake takes ~0.2 ms to come back, on each side."""
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spin.kill()
        spin.wait(10)


async def in_turns(wholes: dict[str, Any], n: int, state: SharedState, gap_s: float) -> dict[str, list[float]]:
    """Each call's times (ms), `n` each, in turns, so that whatever else the machine does weighs on
    all alike; on one event loop, as in a server. `gap_s` idle between calls, untimed: a lightly
    loaded server's CPUs halt between requests, and on a VM waking them is what a round trip costs."""
    times: dict[str, list[float]] = {name: [] for name in wholes}
    for _ in range(n):
        for name, whole in wholes.items():
            t0 = time.perf_counter()
            await waited(whole())
            times[name].append((time.perf_counter() - t0) * 1000)
            state.link.flush()  # untimed: the sender's thread reads the answers before the next turn
            if gap_s:
                await asyncio.sleep(gap_s)
    return times


async def per_request(whole: Any, n: int, state: SharedState) -> float:
    """ms per request, `n` back to back with every answer read by the end: what a request costs
    the process (the sender's thread parses its writes' answers under the same GIL), not only
    what it waits for."""
    t0 = time.perf_counter()
    for _ in range(n):
        await waited(whole())
    state.link.flush()
    return (time.perf_counter() - t0) * 1000 / n


def idle_cost(n: int = 2000, gap_s: float = 0.0) -> dict[str, float]:
    """A whole request's state calls with the servers stopped, with [state] and without, and a bare
    PING, in turns (`gap_s` idle between them)."""
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp, port = Path(tmp_s), load.free_port()
        redis = start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                       "--dir", tmp_s], dict(os.environ))
        try:
            url = f"redis://127.0.0.1:{port}/0"
            from llmrouter.server.auth import KeyStore

            KeyStore(tmp / "keys.json").create("bench", tier="free", rpm=10**6, tpm=10**9, budget_usd=1e9)
            data = table("http://127.0.0.1:9", url)
            data["budgets"]["per_key"] = 1e9
            for _ in range(100):  # until it answers
                if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() == b"PONG":
                    break
                time.sleep(0.05)
            state = SharedState(StateSettings(url=url))
            assert state.link.check(), "the bench's redis-server did not answer"
            wholes = {"state": WholeRequest(data, tmp / "keys.json", state),
                      "state_elsewhere": WholeRequest(data, tmp / "keys.json", state, session_here=False),
                      "state_elsewhere_sync_read": WholeRequest(data, tmp / "keys.json", state, aio=False,
                                                                session_here=False),
                      "local": WholeRequest(data, tmp / "keys.json", None),
                      "ping": state.link.client.ping}  # one bare round trip: the floor of each of them
            times = asyncio.run(in_turns(wholes, n, state, gap_s))
            out = {f"{name}_{p}_ms": measure.pct(v, q) for name, v in times.items() for p, q in (("p50", 50), ("p95", 95))}
            for name, added in (("state", "added"), ("state_elsewhere", "added_elsewhere"),
                                ("state_elsewhere_sync_read", "added_elsewhere_sync_read")):
                out[f"{added}_p50_ms"] = out[f"{name}_p50_ms"] - out["local_p50_ms"]
            out["round_trips_per_request"], out["unwaited_sends_per_request"] = asyncio.run(
                state_round_trips(wholes["state"]))
            out["elsewhere_round_trips_per_request"], out["elsewhere_unwaited_sends_per_request"] = asyncio.run(
                state_round_trips(wholes["state_elsewhere"]))
            if not gap_s:
                for name in ("state", "local"):
                    out[f"{name}_per_request_ms"] = min(asyncio.run(per_request(wholes[name], n // 4, state))
                                                        for _ in range(3))
            out["load_avg_1m"], out["gap_ms"] = os.getloadavg()[0], gap_s * 1000
            return out
        finally:
            redis.terminate()
            redis.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", default="1,2,4")
    ap.add_argument("--requests", type=int, default=60, help="model-decided requests per process count")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    env = {**os.environ, "LLMROUTER_LOG_LEVEL": "error"}
    prompts = load.base_prompts(str(DEV))
    rows = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        redis_port, emu_port = load.free_port(), load.free_port()
        redis = start(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                       "--appendonly", "no", "--dir", tmp_s], env)
        emu = start([sys.executable, "-m", "llmrouter.testing.emulator", "--port", str(emu_port), "--text", "ok"], env)
        redis_url, emu_url = f"redis://127.0.0.1:{redis_port}/0", f"http://127.0.0.1:{emu_port}"
        try:
            load.wait_up(f"{emu_url}/healthz", emu)
            for n in [int(x) for x in args.processes.split(",")]:
                subprocess.run(["redis-cli", "-p", str(redis_port), "flushall"], check=True, capture_output=True)
                print(f"{n} process(es), shared state", flush=True)
                rows.append(run_one(n, redis_url, emu_url, prompts, args.requests, env, tmp))
            print("2 processes, no [state]", flush=True)
            rows.append(run_one(2, None, emu_url, prompts, args.requests, env, tmp))
        finally:
            for p in (emu, redis):
                p.terminate()
                p.wait(10)
    costs: dict[str, Any] = {key: idle_cost(gap_s=gap) for key, _, gap in IDLE_CONDITIONS if key != "idle_busy_core"}
    with busy_core():
        costs["idle_busy_core"] = idle_cost()
    m = measure.machine()
    results = {"rows": rows, **costs, "machine": {**m, "note": "redis, emulator, servers and client share the cores"},
               "settings": {"requests": args.requests, "in_flight": IN_FLIGHT, "max_rate": MAX_RATE,
                            "cap_usd": CAP_USD}}
    for f in measure.write_results(results, Path(args.out), "scale_out", markdown, lambda r, p: False):
        print(f"wrote {f}")
    print(markdown(results))


# (results key, label, idle seconds between calls): how awake the CPUs are decides what a round trip costs on a VM
IDLE_CONDITIONS = (("idle_busy_core", "one core kept busy by another process", 0.0),
                   ("idle", "calls back to back", 0.0),
                   ("idle_gap_2ms", "2 ms idle between calls", 0.002),
                   ("idle_gap_10ms", "10 ms idle between calls (the vCPUs halt)", 0.01))


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = ["# Scale-out: processes sharing one Redis", "",
             f"Machine: {m['cores']} cores ({m['cpu']}), no GPU; redis-server, emulator, servers and client on "
             f"the same machine. Each server process loads its own router model (smollm2-135m, 1 thread).", "",
             f"Throughput: {r['settings']['requests']} model-decided requests, {IN_FLIGHT} in flight, spread "
             "round-robin. Spend cap: $20 per caller per window, $1 per answer, 60 requests, 8 in flight. "
             f"Escalation cap: max_rate {MAX_RATE} (min_confidence 0.99 makes nearly every decision want to go up). "
             "Stickiness: 12 sessions start on one process (pinned), their next turn lands on the next process.", "",
             "| processes | [state] | requests/s | escalated share (cap) | spend cap $20: answered / overshoot | "
             "sessions kept on their route |", "|---|---|---|---|---|---|"]
    for row in r["rows"]:
        t, s, k = row.get("throughput"), row["spend"], row.get("sticky")
        rate = f"{t['per_s']}" if t else "-"
        share = f"{t['escalated_share']:.0%} ({MAX_RATE:.0%})" if t else "-"
        kept = f"{k['kept_route']}/{k['sessions']}" if k else "-"
        state = "redis" if row["shared_state"] else "none"
        lines.append(f"| {row['processes']} | {state} | {rate} | {share} | "
                     f"${s['spent_usd']:g} / ${s['overshoot_usd']:g} | {kept} |")
    lines += ["", "Servers stopped, one request using every shared feature (key rate limits and budget, spend "
              "ledger per key and tier, escalation window, session), far below its limits, timed in turns with the "
              "same request on local state and a bare PING (ms, p50; p95 in brackets). Its session's last turn "
              "was served by this process lately, or elsewhere (or long ago: the session is read from Redis, through "
              "the asyncio client as the server does; the last column with the sync client):", "",
              "| machine | PING | local state | [state] | **added by [state]** | round trips waited (+ sends "
              "unwaited) | session served elsewhere: [state] | **added** | round trips (+ sends) | added, sync read |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for key, label, _ in IDLE_CONDITIONS:
        c = r.get(key)
        if c and "added_elsewhere_p50_ms" in c:
            lines.append(f"| {label} (load average {c['load_avg_1m']:.1f}) | {c['ping_p50_ms']:.2f} | "
                         f"{c['local_p50_ms']:.2f} | {c['state_p50_ms']:.2f} ({c['state_p95_ms']:.2f}) | "
                         f"**{c['added_p50_ms']:.2f}** | {c['round_trips_per_request']:g} "
                         f"(+{c['unwaited_sends_per_request']:g}) | {c['state_elsewhere_p50_ms']:.2f} "
                         f"({c['state_elsewhere_p95_ms']:.2f}) | **{c['added_elsewhere_p50_ms']:.2f}** | "
                         f"{c['elsewhere_round_trips_per_request']:g} (+{c['elsewhere_unwaited_sends_per_request']:g}) "
                         f"| {c['added_elsewhere_sync_read_p50_ms']:.2f} |")
    lines += ["", "What a request costs the process, answers included (requests back to back, every unwaited "
              "write's answer read by the end, best of 3; the sender's thread parses them under the same GIL): "
              "ms per request, [state] / local:", ""]
    for key, label, _ in IDLE_CONDITIONS:
        c = r.get(key)
        if c and "state_per_request_ms" in c:
            lines.append(f"- {label}: {c['state_per_request_ms']:.2f} / {c['local_per_request_ms']:.2f} "
                         f"(**+{c['state_per_request_ms'] - c['local_per_request_ms']:.2f}**)")
    calls = [row["throughput"]["state_calls"] for row in r["rows"] if row.get("throughput")]
    if calls:
        lines += ["", "State calls, timed from a process of their own on the same Redis while the servers were busy "
                  "(ms, p50 / p95; on 2 cores they wait for the CPU like the servers do):", "", "| call | " + " | ".join(
                      f"{row['processes']} proc" for row in r["rows"] if row.get("throughput")) + " |",
                  "|---|" + "---|" * len(calls)]
        for name in [c for c in calls[0] if not c.startswith("_")]:
            lines.append(f"| {name} | " + " | ".join(f"{c[name]['p50_ms']:.2f} / {c[name]['p95_ms']:.2f}"
                                                      for c in calls) + " |")
        lines.append(f"\nThe timing process saw {sum(c['_outages']['n'] for c in calls)} Redis outage(s) "
                     "(a call past timeout_ms): its calls all reached Redis.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
