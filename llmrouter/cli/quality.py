"""`llmrouter eval` and `llmrouter tune`: measure a router on labelled data, and tune it."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from llmrouter.cli.app import app, fail
from llmrouter.config import Config

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

DataArg = typer.Argument(..., help="JSONL of {\"prompt\": ..., \"label\": ROUTE} lines (or \"messages\").")


@contextmanager
def _progress(quiet: bool) -> Iterator[Callable[[str, int], Callable[[], None]] | None]:
    if quiet:
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=err, transient=True) as bar:
        def start(label: str, total: int) -> Callable[[], None]:
            task = bar.add_task(label, total=total)
            return lambda: bar.advance(task)

        yield start


def _summary(results: dict) -> Table:
    from llmrouter.quality import evaluate as ev

    t = Table("variant", "accuracy", "macro-F1", "ECE", "p50 ms", "p95 ms", "USD / 1k", "n")
    for row in ev.summary_rows(results):
        t.add_row(*row)
    return t


def _stages(results: dict) -> Table:
    t = Table("variant", "decided by", "share", "accuracy there")
    for name, m in results.items():
        for who, s in m.get("stages", {}).items():
            t.add_row(name, who, f"{s['share']:.1%}", f"{s['accuracy']:.3f}")
    return t


@app.command("eval")
def eval_(
    data: Path = DataArg,
    config: Optional[list[Path]] = typer.Option(None, "--config", "-c", help="Route table(s) to compare (repeatable). Default: the packaged table."),
    prompt: Optional[list[str]] = typer.Option(None, "--prompt", "-p", help="Router prompt(s) to compare, by name or .j2 path (repeatable)."),
    out_dir: Path = typer.Option(Path("eval-report"), "--out", "-o", help="Folder for report.md, report.json and the plots."),
    holdout: bool = typer.Option(False, "--holdout", help="Score only the held-out split that `tune` (same seed) never fits on."),
    seed: int = typer.Option(0, help="Seed of the held-out split."),
    test_fraction: float = typer.Option(0.25, min=0.05, max=0.9, help="Size of the held-out split."),
    limit: int = typer.Option(0, min=0, help="Use only the first N records (0: all)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar."),
) -> None:
    """Measure routing quality on labelled data: accuracy, F1, calibration, latency, cost."""
    from llmrouter.quality import evaluate as ev
    from llmrouter.router import Router

    records = ev.load_records(data)
    if limit:
        records = records[:limit]
    paths: list[Path | None] = list(config) if config else [None]
    configs = [Config.load(c) for c in paths]
    prompts: list[str | None] = list(prompt) if prompt else [None]
    variants = []
    for path, cfg in zip(paths, configs):
        base = path.stem if path else "default"
        for p in prompts:
            variants.append((f"{base}:{p}" if p else base, cfg.with_router(prompt=p) if p else cfg))
    names = configs[0].table.names
    if holdout:
        labels = [r.label for r in records]
        ev.check_labels(records, names)
        _, test, _ = ev.split_indices(labels, [r.source for r in records], test_fraction, seed)
        records = [records[i] for i in test]
        err.print(f"scoring the held-out split: {len(records)} records")
    results = {}
    with _progress(quiet) as progress:
        for name, cfg in variants:
            router = Router(cfg.with_router(cache=False))
            try:
                results[name] = ev.evaluate_router(router, records, progress)
            finally:
                router.close()
                del router
                gc.collect()  # one router model in memory at a time
    files = ev.write_report(results, out_dir, title=f"Router evaluation: {data.name}")
    out.print(_summary(results))
    out.print(_stages(results))
    out.print(f"report: {', '.join(str(f) for f in files[:2])} (+{len(files) - 2} plots)")


@app.command()
def tune(
    data: Path = DataArg,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Route table to tune. Default: the packaged table."),
    out_path: Path = typer.Option(..., "--out", "-o", help="Where to write the tuned table (TOML); its head goes beside it."),
    prompt: Optional[list[str]] = typer.Option(None, "--prompt", "-p", help="Other router prompts to try (repeatable)."),
    candidate: Optional[list[Path]] = typer.Option(None, "--candidate", help="Other versions of the table to try (other descriptions/examples; same routes)."),
    seed: int = typer.Option(0, help="Seed for splits and fitting."),
    folds: int = typer.Option(5, min=2, max=20, help="Cross-validation folds."),
    test_fraction: float = typer.Option(0.25, min=0.05, max=0.9, help="Held-out split for before/after."),
    by_source: Optional[bool] = typer.Option(None, "--by-source/--stratified", help="Split by the records' `source` (default: when 3+ sources)."),
    refit_all: bool = typer.Option(False, "--refit-all", help="Fit the final head on all records (then evaluate it on new data only)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar."),
) -> None:
    """Tune a route table on labelled data and write the tuned table and its fitted head."""
    from llmrouter.quality import evaluate as ev
    from llmrouter.quality import tune as tn

    cfg = Config.load(config)
    records = ev.load_records(data)
    if len(records) < 10:
        fail(f"{data} has {len(records)} records; tuning needs at least 10")
    candidates = [Config.load(c) for c in candidate or []]
    with _progress(quiet) as progress:
        result = tn.tune(cfg, records, prompts=prompt or [], candidates=candidates, seed=seed,
                         folds=folds, test_fraction=test_fraction, by_source=by_source,
                         refit_all=refit_all, progress=progress, log=lambda s: err.print(s, markup=False))
    files = tn.write(result, out_path)
    t = Table("held-out split", "accuracy", "macro-F1", "ECE", "n")
    for name, m in (("before (model scores)", result.before), (f"after ({result.spec.label})", result.after)):
        t.add_row(name, f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}", f"{m['ece']:.3f}", str(m["n"]))
    out.print(t)
    if "stages" in result.after:
        st = result.after["stages"]
        out.print(f"cascade on the held-out split: the cheap stage (threshold {st['threshold']}) decided "
                  f"{st['share']:.1%} at accuracy {st['cheap_accuracy']:.3f}; the model the rest at "
                  f"{st['model_accuracy']:.3f}")
    out.print(f"chose prompt {result.variant}, {result.spec.label}; wrote {', '.join(str(f) for f in files)}")
