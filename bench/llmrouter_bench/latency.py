"""Run the latency benchmark for some models and thread settings; write JSON, markdown and PNGs."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from llmrouter_bench import measure as bm
from llmrouter.config import Config


def load_texts(data: str | None, limit: int) -> list[str]:
    """Prompts from a JSONL file ({"prompt": ...} or messages) or the built-in samples."""
    if not data:
        return list(bm.SAMPLE_REQUESTS)[:limit]
    from llmrouter.types import Request

    texts = []
    for line in Path(data).read_text("utf-8").splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        texts.append(Request.of(rec.get("messages") or rec["prompt"]).text)
    step = max(1, len(texts) // limit)
    return texts[::step][:limit]


def run(
    config_path: str | None = None,
    models: list[str] | None = None,
    threads: list[int] | None = None,
    data: str | None = None,
    *,
    limit: int = 40,
    repeats: int = 3,
    paths: bool = True,
    contention: bool = True,
    cold: bool = True,
    progress: Any = None,
) -> dict[str, Any]:
    from llmrouter.router import Router

    base = Config.load(config_path)
    texts = load_texts(data, limit)
    results: dict[str, Any] = {"machine": bm.machine(), "requests": len(texts), "repeats": repeats,
                               "started": time.strftime("%Y-%m-%d %H:%M:%S"), "runs": []}
    tick = progress or (lambda: None)
    for model in models or [base.router.model]:
        for n in threads or [base.router.threads]:
            cfg = base.with_router(model=model, threads=n, threads_batch=n, cache=False)
            router = Router(cfg)
            d = router.decider
            run_: dict[str, Any] = {"model": model, "threads": n, "prefix_tokens": len(d.prefix),
                                    "suffix_tokens": len(d.suffix), "extra_passes": d.extra_passes,
                                    "prefix_source": d.prefix_source}
            run_["warm"] = bm.measure_warm(d, texts, repeats, tick)
            run_["tokens_per_decision"] = run_["warm"]["all"]["tokens_mean"] + len(d.suffix)
            if contention:
                with bm.Busy():
                    run_["contention"] = bm.measure_warm(d, texts[: max(8, len(texts) // 2)], 1, tick)
            if paths:
                run_["paths"] = measure_paths(router, texts[:6], tick)
            with tempfile.TemporaryDirectory() as tmp:
                from llmrouter.cache import DecisionCache

                cached = Router(cfg.with_router(cache=True, cascade=False), decider=d,
                                cache=DecisionCache(Path(tmp)))  # the model decides, the cache keeps it
                cached.model_sha256 = router.model_sha256
                run_["cache_hit"] = bm.measure_cache_hit(cached, texts[0])
                cached.close()
            results["runs"].append(run_)
            del router, d
        if cold:
            results.setdefault("cold", {})[model] = bm.measure_cold(
                _config_for(base, model, config_path))
    return results


def _config_for(base: Config, model: str, config_path: str | None) -> str | None:
    if model == base.router.model:
        return config_path
    tmp = Path(tempfile.mkdtemp()) / "bench.toml"
    tmp.write_text(base.with_router(model=model).to_toml())
    return str(tmp)


def measure_paths(router: Any, texts: list[str], tick: Any) -> dict[str, Any]:
    """Optimised vs GBNF vs hand-written Outlines, on the same requests."""
    from llmrouter import models

    d = router.decider
    out: dict[str, list[float]] = {"optimised": [], "gbnf": [], "outlines_naive": []}
    grammar = bm.GrammarPath(d)
    naive = bm.NaiveOutlinesPath(d, models.resolve(router.config.router.model))
    naive(texts[0])  # first call pays Outlines' one-off setup; users pay it once per process
    for text in texts:
        out["optimised"].append(bm.optimised_ms(d, text))
        out["gbnf"].append(grammar(text))
        out["outlines_naive"].append(naive(text))
        tick()
    return {k: bm.summary(v) for k, v in out.items()}


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores, llama-cpp-python {m['llama_cpp_python']}, "
             f"GPU offload {'yes' if m['gpu_offload'] else 'no'}; {results['requests']} requests x "
             f"{results['repeats']} repeats; {results['started']}.", ""]
    lines += ["| model | threads | bucket | n | tokens | decision p50 | p95 | p99 | floor p50 | "
              "ratio p50 | ratio p95 |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        for b, v in r["warm"].items():
            if b == "rows":
                continue
            o, f = v["optimised"], v["floor"]
            lines.append(f"| {r['model']} | {r['threads']} | {b} | {o['n']} | {v['tokens_mean']:.0f} | "
                         f"{o['p50']:.1f} ms | {o['p95']:.1f} | {o['p99']:.1f} | {f['p50']:.1f} ms | "
                         f"{v['ratio_p50']:.2f}x | {v['ratio_p95']:.2f}x |")
    lines += ["", "| model | threads | cache hit p50 | idle p95 | busy-core p50 | busy-core p95 | "
              "busy/idle p95 | tokens/decision | prefix tokens |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        idle = r["warm"]["all"]["optimised"]
        busy = r.get("contention", {}).get("all", {}).get("optimised", {})
        ratio = busy.get("p95", float("nan")) / idle["p95"]
        lines.append(f"| {r['model']} | {r['threads']} | {r['cache_hit']['p50']:.3f} ms | "
                     f"{idle['p95']:.1f} ms | {busy.get('p50', float('nan')):.1f} ms | "
                     f"{busy.get('p95', float('nan')):.1f} ms | {ratio:.2f}x | "
                     f"{r['tokens_per_decision']:.0f} | {r['prefix_tokens']} |")
    if any("paths" in r for r in results["runs"]):
        lines += ["", "| model | threads | path | p50 | p95 | vs optimised p50 |", "|---|---|---|---|---|---|"]
        for r in results["runs"]:
            p = r.get("paths")
            if not p:
                continue
            for name, v in p.items():
                lines.append(f"| {r['model']} | {r['threads']} | {name} | {v['p50']:.1f} ms | "
                             f"{v['p95']:.1f} ms | {v['p50'] / p['optimised']['p50']:.1f}x |")
    if results.get("cold"):
        lines += ["", "| model | cold `llmrouter route` p50 | max | peak RSS |", "|---|---|---|---|"]
        for model, c in results["cold"].items():
            lines.append(f"| {model} | {c['p50']:.0f} ms | {max(c['p50'], c['p95']):.0f} ms | "
                         f"{c['peak_rss_mb']:.0f} MB |")
    text = "\n".join(lines) + "\n"
    if results.get("breakeven"):
        from llmrouter_bench import breakeven

        text += "\n" + breakeven.markdown(results["breakeven"])
    return text


def write(results: dict[str, Any], out_dir: Path, name: str = "latency") -> list[Path]:
    return bm.write_results(results, out_dir, name, markdown, plot)


def plot(results: dict[str, Any], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    if not runs:
        return False
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.6), squeeze=False)
    for ax, r in zip(axes[0], runs):
        rows = r["warm"]["rows"]
        ax.hist([x["floor_ms"] for x in rows], bins=20, alpha=0.6, label="floor")
        ax.hist([x["optimised_ms"] for x in rows], bins=20, alpha=0.6, label="llmrouter decision")
        if "contention" in r:
            ax.hist([x["optimised_ms"] for x in r["contention"]["rows"]], bins=20, alpha=0.4,
                    label="decision, one core busy")
        ax.set_title(f"{r['model']}, {r['threads']} thread(s)")
        ax.set_xlabel("ms per decision (cache miss)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
