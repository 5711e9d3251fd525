"""`llmrouter bench`: the router's latency tax, measured on this machine."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer

from llmrouter import log as logmod
from llmrouter.cli.app import ConfigOpt, app, fail
from llmrouter.errors import MissingExtra, need
from llmrouter.paths import resource_path


def bench_lib(module: str) -> Any:
    """A module of the measuring code, which lives in bench/llmrouter_bench (the checkout's, or the
    copy a wheel carries)."""
    need("matplotlib", "tune", "llmrouter bench")
    try:
        folder = resource_path("bench")
    except FileNotFoundError:
        raise MissingExtra("llmrouter bench needs the bench/ folder, which this installation lacks",
                           hint="run it from a checkout of llmrouter (`make bench`)") from None
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return importlib.import_module(f"llmrouter_bench.{module}")


@app.command()
def bench(
    config: Optional[Path] = ConfigOpt,
    model: Optional[List[str]] = typer.Option(None, "--model", help="Router model(s) to compare (name or .gguf path)."),
    threads: str = typer.Option("1,2", help="Comma-separated llama.cpp thread counts to compare."),
    data: Optional[Path] = typer.Option(None, help="JSONL of {\"prompt\": ...} to time (default: built-in samples)."),
    out: Path = typer.Option(Path("bench-results"), help="Where to write latency.{json,md,png}."),
    limit: int = typer.Option(40, help="Number of requests."),
    repeats: int = typer.Option(3, help="Timed repeats per request (median kept)."),
    paths: bool = typer.Option(True, help="Also time the GBNF and hand-written Outlines paths."),
    contention: bool = typer.Option(True, help="Also time with another process keeping a core busy."),
    cold: bool = typer.Option(True, help="Also time whole `llmrouter route` processes."),
    server: bool = typer.Option(True, help="With target prices/latencies: routed vs direct through the server."),
    concurrency: Optional[str] = typer.Option(
        None, help="Instead: routing under load through `llmrouter serve` at these levels, e.g. 1,8,32,200 "
        "(who decides, decisions/s, added latency)."),
    workers: int = typer.Option(1, min=1, help="With --concurrency: the server's [router] workers."),
) -> None:
    """Measure the router's latency tax on this machine: decision vs floor, paths, load, cold start."""
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    logmod.configure(level="warning")
    if concurrency is not None:
        _under_load(config, concurrency, workers, str(data) if data else None, out)
        return
    latency = bench_lib("latency")

    try:
        thread_list = [int(t) for t in threads.split(",") if t.strip()]
    except ValueError:
        fail(f"--threads takes numbers like 1,2 (got {threads!r})")
        return
    con = Console(stderr=True)
    n_models = len(model or [None])
    per_run = limit + (max(8, limit // 2) if contention else 0) + (6 if paths else 0)
    with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=con, transient=True) as bar:
        task = bar.add_task("timing decisions", total=per_run * n_models * len(thread_list))
        results = latency.run(str(config) if config else None, list(model) if model else None,
                                thread_list, str(data) if data else None, limit=limit, repeats=repeats,
                                paths=paths, contention=contention, cold=cold,
                                progress=lambda: bar.advance(task))
    if server:
        results["breakeven"] = bench_lib("breakeven").run_if_priced(str(config) if config else None, results)
    written = latency.write(results, out, "latency")
    Console().print(Markdown(latency.markdown(results)))
    for p in written:
        con.print(f"wrote {p}")


def _under_load(config: Optional[Path], levels: str, workers: int, data: str | None, out: Path) -> None:
    from rich.console import Console
    from rich.markdown import Markdown

    try:
        level_list = [int(x) for x in levels.split(",") if x.strip()]
    except ValueError:
        level_list = []
    if not level_list or min(level_list) < 1:
        fail(f"--concurrency takes positive numbers like 1,8,32,200 (got {levels!r})")
    load = bench_lib("load")
    con = Console(stderr=True)
    with con.status("routing under load (emulator + llmrouter serve)...") as status:
        results = load.run(str(config) if config else None, level_list, data=data, workers=workers,
                           progress=lambda s: status.update(s))
    written = load.write(results, out, "load")
    Console().print(Markdown(load.markdown(results)))
    for p in written:
        con.print(f"wrote {p}")
