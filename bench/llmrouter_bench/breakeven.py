"""Is the router worth its tax? Routed vs direct requests through the real server, priced.

The route table's targets are replaced by emulated ones that answer after each target's declared
`latency_ms`. Every request is sent twice: through `llmrouter serve` (model="router", decision
cache off) and straight to the target the router picked. The difference is the router's tax.
The saving is what the chosen targets cost in latency and money compared with sending everything
to the most expensive target of the table.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx

from llmrouter_bench import measure as bm
from llmrouter.config import Config

OUTPUT_TOKENS = 300  # assumed answer length for the cost estimate


def priced(config: Config) -> bool:
    used = {t for r in config.table.routes for t in r.targets}
    ts = [config.targets[t] for t in used]
    return len(ts) > 1 and any(t.latency_ms for t in ts) and any(t.output_price for t in ts)


def run_if_priced(config_path: str | None, results: dict[str, Any], n: int = 24) -> dict[str, Any]:
    config = Config.load(config_path)
    if not priced(config):
        return {"skipped": "the route table's targets have no latency_ms and prices: nothing to break even against"}
    return run(config, n=n)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cost(t: Any, text: str) -> float:
    return float(t.cost_usd(len(text) / 4, OUTPUT_TOKENS))


def run(config: Config, n: int = 24, texts: list[str] | None = None) -> dict[str, Any]:
    """Time `n` requests routed and direct; returns tax, savings and the net."""
    import uvicorn

    from llmrouter.testing import Behavior, Emulator
    from llmrouter.router import Router
    from llmrouter.server import create_app

    texts = (texts or bm.SAMPLE_REQUESTS)[:n]
    emu = Emulator().start()
    try:
        targets = {}
        for name, t in config.targets.items():
            emu.set_default(name, Behavior(latency_s=t.latency_ms / 1000, text="ok"))
            targets[name] = {**t.model_dump(exclude={"name"}), "provider": "openai",
                             "base_url": emu.base_url(name), "api_key_env": ""}
        data = config.to_dict()
        data["targets"] = targets
        data["router"]["cache"] = False
        local = Config.from_dict(data)
        router = Router(local)
        port = _free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(router), host="127.0.0.1", port=port,
                                               log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        try:
            rows = _measure(local, router, f"http://127.0.0.1:{port}/v1", emu, texts)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    finally:
        emu.stop()
    return _summarise(local, rows)


def _measure(config: Config, router: Any, base: str, emu: Any, texts: list[str]) -> list[dict[str, Any]]:
    rows = []
    with httpx.Client(timeout=60) as client:
        for i, text in enumerate(texts + texts[:2]):
            body = {"messages": [{"role": "user", "content": text}]}
            t0 = time.perf_counter()
            r = client.post(f"{base}/chat/completions", json={**body, "model": "router"})
            routed = (time.perf_counter() - t0) * 1000
            r.raise_for_status()
            target = r.headers["x-llmrouter-target"]
            route = r.headers.get("x-llmrouter-route", "")
            t0 = time.perf_counter()
            client.post(f"{emu.base_url(target)}/chat/completions",
                        json={**body, "model": config.targets[target].model}).raise_for_status()
            direct = (time.perf_counter() - t0) * 1000
            if i >= 2:  # the first two warm up connections and the server's thread pool
                decision = router.decide(text, use_cache=False).timings.total_ms
                rows.append({"text": text, "route": route, "target": target, "routed_ms": routed,
                             "direct_ms": direct, "decision_ms": decision})
    return rows


def _summarise(config: Config, rows: list[dict[str, Any]]) -> dict[str, Any]:
    ts = config.targets
    used = {t for r in config.table.routes for t in r.targets}
    frontier = max(used, key=lambda t: (ts[t].output_price + ts[t].input_price, ts[t].latency_ms))
    tax = [r["routed_ms"] - r["direct_ms"] for r in rows]
    decision = [r["decision_ms"] for r in rows]
    saved_ms = [ts[frontier].latency_ms - ts[r["target"]].latency_ms for r in rows]
    cost_routed = sum(_cost(ts[r["target"]], r["text"]) for r in rows)
    cost_frontier = sum(_cost(ts[frontier], r["text"]) for r in rows)
    share: dict[str, int] = {}
    for r in rows:
        share[r["target"]] = share.get(r["target"], 0) + 1
    k = 1000 / max(len(rows), 1)
    return {
        "requests": len(rows), "baseline_target": frontier, "target_share": share,
        "tax_ms": bm.summary(tax), "decision_ms": bm.summary(decision),
        # paired per request: the difference of two medians swung by +-15 ms with 16 requests
        "server_overhead_p50_ms": bm.pct([t - d for t, d in zip(tax, decision)], 50),
        "latency_saved_ms_mean": sum(saved_ms) / max(len(rows), 1),
        "net_latency_ms_mean": sum(saved_ms) / max(len(rows), 1) - sum(tax) / max(len(tax), 1),
        "cost_per_1k_routed": cost_routed * k, "cost_per_1k_baseline": cost_frontier * k,
        "cost_saving_pct": 100 * (1 - cost_routed / cost_frontier) if cost_frontier else 0.0,
        "assumed_output_tokens": OUTPUT_TOKENS,
    }


def markdown(b: dict[str, Any]) -> str:
    if "skipped" in b:
        return f"Break-even: skipped ({b['skipped']}).\n"
    return "\n".join([
        f"Break-even over {b['requests']} requests through the server (baseline: everything to "
        f"`{b['baseline_target']}`; targets used: {b['target_share']}):", "",
        "| router tax p50 | tax p95 | decision p50 | server overhead p50 | latency saved (mean) | "
        "net (mean) | cost / 1k routed | cost / 1k baseline | cost saved |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {b['tax_ms']['p50']:.1f} ms | {b['tax_ms']['p95']:.1f} ms | {b['decision_ms']['p50']:.1f} ms | "
        f"{b['server_overhead_p50_ms']:+.1f} ms | {b['latency_saved_ms_mean']:.0f} ms | "
        f"{b['net_latency_ms_mean']:+.0f} ms | ${b['cost_per_1k_routed']:.3f} | "
        f"${b['cost_per_1k_baseline']:.3f} | {b['cost_saving_pct']:.0f}% |", ""])
