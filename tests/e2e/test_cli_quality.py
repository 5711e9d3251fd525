"""`llmrouter eval` and `llmrouter tune` in-process on a tiny labelled file and a 3-route table."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from llmrouter.cli import app
from llmrouter.config import Config
from llmrouter.head import FittedHead

pytestmark = pytest.mark.model

TABLE = """
[router]
default_route = "chat"

[targets.local]
provider = "local"
model = "smollm2-135m"

[[routes]]
name = "code"
description = "Programming: write or fix code."
examples = ["Write a Python function that sorts a list.", "Why does my Java code throw a NullPointerException?"]
targets = ["local"]

[[routes]]
name = "math"
description = "Math: calculate or solve a problem with numbers."
examples = ["What is 15% of 80?", "Solve x^2 = 49."]
targets = ["local"]

[[routes]]
name = "chat"
description = "Small talk with the assistant."
examples = ["hello!", "thanks a lot"]
targets = ["local"]
"""

ROWS = [
    ("Write a JavaScript function that debounces another function.", "code"),
    ("Fix this SQL: SELECT * FORM users;", "code"),
    ("How do I read a file line by line in Go?", "code"),
    ("Implement binary search in C.", "code"),
    ("Write a bash loop over all .txt files.", "code"),
    ("What is 12 times 13?", "math"),
    ("A car drives 150 km in 2 hours. What is its speed?", "math"),
    ("Find the derivative of x^2 + 3x.", "math"),
    ("What is the square root of 144?", "math"),
    ("Solve 5x - 3 = 12.", "math"),
    ("hey, how's your day?", "chat"),
    ("good night!", "chat"),
    ("you're funny", "chat"),
    ("what's your name?", "chat"),
    ("I'm tired today", "chat"),
]


def written(folder, name: str, table: str, records: list[dict]):
    """A route table and its JSONL data in `folder`: (table path, data path)."""
    (folder / f"{name}.toml").write_text(table)
    (folder / f"{name}.jsonl").write_text("\n".join(json.dumps(x) for x in records) + "\n")
    return folder / f"{name}.toml", folder / f"{name}.jsonl"


@pytest.fixture
def files(tmp_path):
    lines = [{"prompt": t, "label": lab, "source": f"s{i % 3}"} for i, (t, lab) in enumerate(ROWS)]
    lines[0] = {"messages": [{"role": "user", "content": ROWS[0][0]}], "label": "code"}
    return written(tmp_path, "routes", TABLE, lines)


def test_eval_writes_a_report(files, tmp_path):
    table, data = files
    out = tmp_path / "report"
    res = CliRunner().invoke(app, ["eval", str(data), "-c", str(table), "--out", str(out), "-q", "--limit", "6"])
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    m = rep["routes"]
    assert m["n"] == 6 and 0 <= m["accuracy"] <= 1 and len(m["confusion"]) == 3
    assert "p50" in m["latency_ms"] and m["decided_by"]
    assert {"report.md", "reliability.png", "latency.png", "confusion_routes.png"} <= {p.name for p in out.iterdir()}
    assert "accuracy" in res.output


def test_tune_writes_a_table_and_head_that_load(files, tmp_path):
    table, data = files
    out = tmp_path / "tuned.toml"
    args = ["tune", str(data), "-c", str(table), "--out", str(out), "-q", "--stratified", "--folds", "3", "--seed", "1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "before" in res.output and "after" in res.output
    assert "warning: route" in res.output  # 3-4 training rows per route is too few
    cfg = Config.load(out)
    assert cfg.table.names == ("code", "math", "chat")
    if cfg.router.head:
        head = FittedHead.load(cfg.router.head_path(cfg.path))
        assert head.routes == cfg.table.names and head.info["seed"] == 1
        # the out-of-distribution support is fitted on the head's own rows: they lie inside it
        assert head.support is not None and (head.support.edge >= head.support.median).all()
    # the tuned table routes
    res = CliRunner().invoke(app, ["route", "--json", "--no-cache", "-c", str(out), "What is 7 times 8?"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["route"] in cfg.table.names and abs(sum(d["scores"].values()) - 1) < 1e-6
    # same seed, same choice
    out2 = tmp_path / "tuned2.toml"
    res2 = CliRunner().invoke(app, args[:5] + [str(out2)] + args[6:])
    assert res2.exit_code == 0
    assert out2.read_text().replace("tuned2", "tuned") == out.read_text()


def test_eval_refuses_unknown_labels(files, tmp_path):
    table, _ = files
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "hi", "label": "poetry"}) + "\n")
    res = CliRunner().invoke(app, ["eval", str(bad), "-c", str(table), "-q"])
    assert res.exit_code != 0
    assert "poetry" in str(res.exception) + res.output


OUTCOME_TABLE = """
[router]
default_route = "big"

[targets.small]
provider = "local"
model = "smollm2-135m"
input_price = 0.1
output_price = 0.1

[targets.large]
provider = "local"
model = "smollm2-135m"
input_price = 1.0
output_price = 1.0

[[routes]]
name = "cheap"
description = "Simple requests."
targets = ["small"]

[[routes]]
name = "big"
description = "Demanding requests."
targets = ["large", "small"]
"""


@pytest.fixture
def outcome_files(tmp_path):
    lines = []
    for i, (text, label) in enumerate(ROWS * 2):  # the small target fails code; both do the rest
        small = 0.0 if label == "code" else 1.0
        lines.append({"prompt": text if i < len(ROWS) else text + " Please.", "source": f"s{i % 3}",
                      "outcomes": {"small": {"score": small, "cost_usd": 1e-5},
                                   "large": {"score": 1.0, "cost_usd": 1e-4}}})
    return written(tmp_path, "outcomes", OUTCOME_TABLE, lines)


def test_tune_outcomes_writes_a_router_that_never_loses_to_the_best_single_target(outcome_files, tmp_path):
    table, data = outcome_files
    out = tmp_path / "tuned.toml"
    res = CliRunner().invoke(app, ["tune-outcomes", str(data), "-c", str(table), "--out", str(out), "-q", "--folds", "3"])
    assert res.exit_code == 0, res.output
    rep = json.loads(json.dumps(FittedHead.load(out.with_suffix(".head.npz")).info))
    gap = rep["cv"]["chosen_vs_best_single"]
    assert gap["gain"] >= -gap["se"] - 1e-12
    assert rep["cv"]["best_single"]["target"] == "large"
    res = CliRunner().invoke(app, ["route", "--json", "--no-cache", "-c", str(out), "hello there"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["route"] in ("cheap", "big")


def test_eval_on_outcome_records_draws_the_curve(outcome_files, tmp_path):
    table, data = outcome_files
    out = tmp_path / "report"
    res = CliRunner().invoke(app, ["eval", str(data), "-c", str(table), "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    assert {"router", "oracle", "random", "cheapest", "best_single"} <= set(rep["summary"]["area"])
    assert (out / "curve.png").stat().st_size > 0 and "APGR" in res.output
