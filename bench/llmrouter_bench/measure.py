"""The measurements behind `llmrouter bench`: the router's latency tax on this machine.

Everything is measured in one run on the same requests: the floor (llama.cpp evaluating only the
request's tokens on the warm prefix plus one decode step), llmrouter's decision, other decision
paths (Outlines through its own llama.cpp wrapper, llama.cpp GBNF grammar), cache hits, cold
start, peak memory, and latency while another process keeps a core busy.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

BUCKETS = (("short", 0, 20), ("medium", 20, 60), ("long", 60, 10**9))

SAMPLE_REQUESTS = [
    "hi!",
    "Thanks a lot, that helped.",
    "What's the capital of Canada?",
    "Write a haiku about the sea.",
    "Translate 'good night' into German.",
    "How many minutes are there in a week?",
    "Write a Python function that returns the n-th Fibonacci number.",
    "Give me five name ideas for a bakery that also sells coffee.",
    "Is this review positive or negative? 'The food was cold and the waiter ignored us.'",
    "Summarize: The city council voted on Tuesday to extend the bike lane network by 40 km over "
    "the next three years, funded by a new parking levy.",
    "Explain the difference between TCP and UDP, and when a game developer should pick each one.",
    "A shop sells pens at 3 for $2. How much do 27 pens cost, and how many pens can I buy with $15?",
    "Extract all the dates and amounts from this invoice: Invoice 2291, issued 3 March 2024, due "
    "2 April 2024. Consulting: $4,200. Travel: $380. Total due: $4,580.",
    "Here is my function: def mean(xs): return sum(xs) / len(xs). It crashes on an empty list. "
    "Fix it so that it returns None for an empty list, add type hints and a docstring, and write "
    "two pytest tests for it.",
    "I am planning a two-week trip through Japan in April with my partner. We like food, hiking "
    "and quiet places more than big cities. Suggest an itinerary with the main stops, how to move "
    "between them by train, and roughly what the rail pass would cost compared with single tickets.",
    "Read the following paragraph and answer: which of the three suppliers should we keep? Supplier "
    "A delivers on time 98% of the time at a unit price of $4.10; supplier B delivers on time 91% "
    "of the time at $3.70; supplier C delivers on time 95% of the time at $3.95 but requires a "
    "minimum order of 10,000 units, while our monthly need is about 6,000 units. Late deliveries "
    "cost us about $0.50 per unit in expedited shipping.",
]


def pct(xs: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs, dtype=float), q)) if xs else float("nan")


def summary(xs: Sequence[float]) -> dict[str, float]:
    return {"n": len(xs), "p50": pct(xs, 50), "p95": pct(xs, 95), "p99": pct(xs, 99),
            "mean": float(np.mean(xs)) if xs else float("nan")}


def bucket_of(n_tokens: int) -> str:
    return next(name for name, lo, hi in BUCKETS if lo <= n_tokens < hi)


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


# --- paths -----------------------------------------------------------------------------------
def floor_ms(decider: Any, tokens: list[int]) -> float:
    """llama.cpp alone: the request's own tokens on the warm prefix, then one decode step."""
    llm = decider.llm
    llm.n_tokens = len(decider.prefix)
    t0 = time.perf_counter()
    llm.eval(tokens)
    llm.eval(tokens[-1:])
    return _ms(t0)


def optimised_ms(decider: Any, text: str) -> float:
    t0 = time.perf_counter()
    decider.decide(text)
    return _ms(t0)


class GrammarPath:
    """llama.cpp GBNF: the same prompt, `{"route": "<name>"}` generated under a grammar."""

    def __init__(self, decider: Any) -> None:
        from llama_cpp import LlamaGrammar

        alts = " | ".join(json.dumps(n) for n in decider.table.names)
        self.grammar = LlamaGrammar.from_string(
            f'root ::= "{{\\"route\\": \\"" route "\\"}}"\nroute ::= {alts}\n', verbose=False)
        self.decider = decider

    def __call__(self, text: str) -> float:
        d = self.decider
        req, _ = d.encode_request(text)
        d.llm.n_tokens = len(d.prefix)  # only the prefix is warm, as for the other paths
        t0 = time.perf_counter()
        d.llm.create_completion(d.prefix + req + d.suffix, max_tokens=24, temperature=0.0,
                                grammar=self.grammar)
        ms = _ms(t0)
        d.llm.n_tokens = len(d.prefix)
        return ms


class NaiveOutlinesPath:
    """What a user writes by hand: Outlines' llama.cpp wrapper generating the JSON decision.

    The wrapper resets the model after every call, so the whole prompt is evaluated each time.
    Runs on its own Llama so it cannot disturb the optimised path's warm prefix.
    """

    def __init__(self, decider: Any, model_path: Path) -> None:
        import outlines

        from llmrouter.llamacpp.load import load_llama
        from llmrouter.validate import route_output_type

        self.decider = decider
        st = decider.settings
        llm = load_llama(model_path, n_ctx=st.context_size, n_threads=st.threads, n_threads_batch=st.threads_batch,
                         n_batch=st.batch_size, gpu_layers=st.gpu_layers)
        self.model = outlines.from_llamacpp(llm, chat_mode=False)
        self.generator = outlines.Generator(self.model, route_output_type(decider.table))

    def __call__(self, text: str) -> float:
        d = self.decider
        prompt = d._detok(d.prefix) + text + d._detok(d.suffix)
        t0 = time.perf_counter()
        self.generator(prompt, max_tokens=24)
        return _ms(t0)


# --- contention ------------------------------------------------------------------------------
def _burn(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


class Busy:
    """A second process keeping one core busy for the duration of the block."""

    def __enter__(self) -> Busy:
        self.proc = mp.get_context("spawn").Process(target=_burn, args=(time.time() + 600,), daemon=True)
        self.proc.start()
        time.sleep(0.3)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.join()


# --- whole runs ------------------------------------------------------------------------------
def measure_warm(decider: Any, texts: Sequence[str], repeats: int, progress: Callable[[], None]) -> dict[str, Any]:
    """Per request: median optimised-path and floor latency, interleaved on the same requests."""
    rows = []
    for text in texts:
        req, _ = decider.encode_request(text)
        opt, flo = [], []
        for _ in range(repeats):
            opt.append(optimised_ms(decider, text))
            flo.append(floor_ms(decider, req))
        rows.append({"tokens": len(req), "bucket": bucket_of(len(req)),
                     "optimised_ms": statistics.median(opt), "floor_ms": statistics.median(flo)})
        progress()
    return {"rows": rows, **aggregate(rows)}


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def block(rs: list[dict[str, Any]]) -> dict[str, Any]:
        opt = [r["optimised_ms"] for r in rs]
        flo = [r["floor_ms"] for r in rs]
        return {"optimised": summary(opt), "floor": summary(flo),
                "ratio_p50": pct(opt, 50) / pct(flo, 50) if rs else float("nan"),
                "ratio_p95": pct(opt, 95) / pct(flo, 95) if rs else float("nan"),
                "tokens_mean": float(np.mean([r["tokens"] for r in rs])) if rs else 0.0}

    out = {"all": block(rows)}
    for name, _, _ in BUCKETS:
        rs = [r for r in rows if r["bucket"] == name]
        if rs:
            out[name] = block(rs)
    in_range = [r for r in rows if 10 <= r["tokens"] <= 60]
    if in_range:
        out["10-60 tokens"] = block(in_range)
    return out


def measure_cache_hit(router: Any, text: str, n: int = 200) -> dict[str, float]:
    router.decide(text)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        d = router.decide(text)
        times.append(_ms(t0))
        assert d.source == "cache", d.source
    return summary(times)


def measure_cold(config_path: str | None, runs: int = 3) -> dict[str, Any]:
    """Wall time of a whole `llmrouter route` process (model pulled, prefix and index cached)."""
    exe = Path(sys.executable).with_name("llmrouter")
    cmd = [str(exe) if exe.exists() else "llmrouter", "route", "--json", "--no-cache"]
    if config_path:
        cmd += ["--config", config_path]
    times, peaks = [], []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd + [f"Cold start probe number {i}: write a limerick"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        peak = _watch_peak_rss(proc)
        wall = _ms(t0)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.returncode != 0:
            raise RuntimeError(f"cold start run failed: {err.strip()[-400:]}")
        peaks.append(peak)
        if i:  # the first run may still write the prefix and index caches
            times.append(wall)
    return {**summary(times), "peak_rss_mb": max(peaks)}


def _watch_peak_rss(proc: subprocess.Popen[bytes]) -> float:
    """The child's own peak RSS in MB (VmHWM), polled until it exits.

    Not ru_maxrss from wait4: Linux carries the forking parent's high-water mark over exec into
    the child's, so a benchmark process holding two models would be counted in every child."""
    peak = 0.0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    return peak


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import llama_cpp

    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "llama_cpp_python": llama_cpp.__version__, "platform": platform.platform(),
            "gpu_offload": bool(llama_cpp.llama_supports_gpu_offload())}


def write_results(results: dict[str, Any], out_dir: Path, name: str, markdown: Callable[[dict[str, Any]], str],
                  plot: Callable[[dict[str, Any], Path], bool]) -> list[Path]:
    """`name`.json, `name`.md and, where `plot` draws one, `name`.png in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.json", out_dir / f"{name}.md"]
    paths[0].write_text(json.dumps(results, indent=2))
    paths[1].write_text(markdown(results))
    png = out_dir / f"{name}.png"
    if plot(results, png):
        paths.append(png)
    return paths
