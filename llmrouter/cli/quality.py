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
    from llmrouter.quality import outcomes as oc
    from llmrouter.router import Router

    if oc.is_outcomes_file(data):
        _eval_outcomes(data, config[0] if config else None, out_dir, seed, quiet)
        return
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
    heads = {n: r["head_cv"] for n, r in results.items() if r.get("head_cv")}
    for name, g in heads.items():
        out.print(f"{name}: its head's calibration when tuned, on CV folds grouped by {g.get('grouping', '?')}: "
                  f"accuracy {g['accuracy']:.3f}, ECE {g['ece']:.3f} (n={g['n']})")


def _eval_outcomes(data: Path, config: Optional[Path], out_dir: Path, seed: int, quiet: bool) -> None:
    """`eval` on outcome records: the cross-validated quality-vs-cost curve and its baselines."""
    from llmrouter.quality import outcome_tune as ot
    from llmrouter.quality import outcomes as oc

    records = oc.load_outcomes(data)
    with _progress(quiet) as progress:
        result = ot.learn(Config.load(config), records, seed=seed, fit_head=False, progress=progress,
                          log=lambda s: err.print(s, markup=False))
    files = ot.report(result, out_dir, f"Quality vs cost: {data.name}")
    _print_curve(result.curve.summary)
    out.print(f"report: {', '.join(str(f) for f in files)}")


def _print_curve(s: dict) -> None:
    t = Table("policy", "USD / 1k", "mean score")
    t.add_row("always-cheapest", f"{s['cheapest']['cost'] * 1000:.4f}", f"{s['cheapest']['quality']:.3f}")
    t.add_row(f"best single ({s['best_single']['target']})", f"{s['best_single']['cost'] * 1000:.4f}",
              f"{s['best_single']['quality']:.3f}")
    t.add_row("oracle", f"{s['oracle_best']['cost'] * 1000:.4f}", f"{s['oracle_best']['quality']:.3f}")
    if s["chosen"]:
        t.add_row(f"router (lambda {s['chosen']['lambda']:g}, margin {s['chosen']['margin']:g})",
                  f"{s['chosen']['cost'] * 1000:.4f}", f"{s['chosen']['quality']:.3f}")
    out.print(t)
    a = s["area"]
    reach = s["cost_to_95pct_best"]
    out.print(f"area under quality-vs-cost: router {a['router']:.3f}, random {a['random']:.3f}, "
              f"oracle {a['oracle']:.3f}; APGR {s['apgr']:.3f}; cost to 95% of the best single target: "
              f"{'not reached' if reach is None else f'{reach * 1000:.4f} USD / 1k'}")


@app.command("tune-outcomes")
def tune_outcomes(
    data: Path = typer.Argument(..., help='JSONL of {"prompt": ..., "outcomes": {TARGET: {"score": 0..1, "cost_usd": ...}}} lines.'),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Route table whose routes' first targets are the outcome targets."),
    out_path: Path = typer.Option(..., "--out", "-o", help="Where to write the tuned table (TOML); its head goes beside it."),
    max_cost: Optional[float] = typer.Option(None, help="Budget: mean USD per request; the best quality within it."),
    min_quality: Optional[float] = typer.Option(None, help="Quality floor (mean score); the cheapest point above it."),
    folds: int = typer.Option(5, min=2, max=20, help="Cross-validation folds."),
    seed: int = typer.Option(0, help="Seed for the folds."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No progress bar."),
) -> None:
    """Fit a router on per-target outcomes: maximise quality minus lambda * cost (lambda chosen for a
    budget or a quality floor; by default it must not lose to the best single target)."""
    from llmrouter.quality import outcome_tune as ot
    from llmrouter.quality import outcomes as oc

    if max_cost is not None and min_quality is not None:
        fail("give --max-cost or --min-quality, not both")
    records = oc.load_outcomes(data)
    cfg = Config.load(config)
    with _progress(quiet) as progress:
        result = ot.learn(cfg, records, max_cost=max_cost, min_quality=min_quality, folds=folds, seed=seed,
                          progress=progress, log=lambda s: err.print(s, markup=False))
    files = ot.write(result, out_path)
    _print_curve(result.curve.summary)
    out.print(f"wrote {', '.join(str(f) for f in files)}")


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
    rows = [("before (model scores)", result.before)]
    rows += [("current head of the table", result.current)] if result.current else []
    rows += [(f"after ({result.spec.label})", result.after)]
    for name, m in rows:
        t.add_row(name, f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}", f"{m['ece']:.3f}", str(m["n"]))
    out.print(t)
    g = Table(f"CV folds grouped by {result.grouping}", "accuracy", "macro-F1", "ECE", "n")
    for name, m in result.grouped.items():
        g.add_row(f"{name} head", f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}", f"{m['ece']:.3f}", str(m["n"]))
    out.print(g)
    for w in result.warnings:
        err.print(f"[yellow]warning:[/] {w}")
    if "stages" in result.after:
        st = result.after["stages"]
        out.print(f"cascade on the held-out split: the cheap stage (threshold {st['threshold']}) decided "
                  f"{st['share']:.1%} at accuracy {st['cheap_accuracy']:.3f}; the model the rest at "
                  f"{st['model_accuracy']:.3f}")
    out.print(f"chose prompt {result.variant}, {result.spec.label}; wrote {', '.join(str(f) for f in files)}")


@app.command("outcomes-from-logs")
def outcomes_from_logs(
    logs: list[Path] = typer.Argument(..., help="JSON logs of `llmrouter serve` (with /v1/feedback events)."),
    prompts: Path = typer.Option(..., "--prompts", help='JSONL of {"id": "<response id>", "prompt": ...} your application kept.'),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="Route table whose target prices estimate each answer's cost."),
    out_path: Path = typer.Option(..., "--out", "-o", help="Outcomes JSONL to write (for `tune-outcomes` and `eval`)."),
) -> None:
    """Turn served answers with feedback scores into outcome records: one target per request."""
    import json

    from llmrouter.cli.stats import read_events
    from llmrouter.quality import evaluate as ev
    from llmrouter.quality import outcomes as oc

    kept: dict[str, str] = {}
    for line in prompts.read_text("utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            kept[str(row["id"])] = str(row["prompt"])
    cfg = Config.load(config)

    def cost_of(target: str, text: str) -> float:
        t = cfg.targets.get(target)
        return t.cost_usd(len(text) / ev.CHARS_PER_TOKEN, ev.OUTPUT_TOKENS) if t is not None else 0.0

    events = [e for path in logs for e in read_events(path)]
    lines, missing = oc.from_feedback(events, kept, cost_of)
    out_path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), "utf-8")
    out.print(f"wrote {len(lines)} outcome records to {out_path}"
              + (f"; {missing} feedback event(s) had no prompt in {prompts}" if missing else ""))
    if lines:
        out.print("each holds the one target that answered: score a sample on every target offline "
                  "(same format) so `tune-outcomes` can draw the curve and choose lambda")
