"""The CLI in-process (typer's CliRunner), on the real default model."""

import json

import pytest
from typer.testing import CliRunner

from llmrouter.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def decisions_dir(tmp_path, monkeypatch):
    # a copy of the default table whose decision cache lives in this test's folder
    cfg = tmp_path / "routes.toml"
    from llmrouter.config import Config

    cfg.write_text(Config.load().with_router(cache_dir=str(tmp_path / "decisions"), cascade=False).to_toml())
    return cfg


@pytest.mark.model
def test_route_json_is_one_object(decisions_dir):
    r = runner.invoke(app, ["route", "--json", "-c", str(decisions_dir), "Write a Python function that reverses a list"])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    d = json.loads(lines[0])
    assert d["route"] in Config_names() and d["source"] == "model"
    again = json.loads(runner.invoke(app, ["route", "--json", "-c", str(decisions_dir),
                                           "Write a Python function that reverses a list"]).stdout)
    assert again["source"] == "cache" and again["route"] == d["route"]


def Config_names():
    from llmrouter.config import Config

    return Config.load().table.names


@pytest.mark.model
def test_route_pretty_and_explain(decisions_dir):
    r = runner.invoke(app, ["route", "--explain", "-c", str(decisions_dir), "Tell me a joke about cats"])
    assert r.exit_code == 0, r.output
    first = r.stdout.splitlines()[0]
    assert first.split()[0] in Config_names() and "confidence" in first and "source=model" in first


def test_route_from_stdin_rejects_non_utf8():
    r = runner.invoke(app, ["route", "-"], input=b"\xff\xfeabc")
    assert r.exit_code == 1
    assert "not UTF-8" in r.output and "Traceback" not in r.output


def test_routes_check_lists_every_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[router]\ndefault_route = "nope"\nthreads = 0\n[[routes]]\nname = "a"\ndescription = "x"\n')
    r = runner.invoke(app, ["routes", "check", str(bad)])
    assert r.exit_code == 1
    assert "router.threads" in r.output and "Traceback" not in r.output


def test_routes_check_ok_and_show_round_trips(tmp_path):
    r = runner.invoke(app, ["routes", "show"])
    assert r.exit_code == 0 and "[[routes]]" in r.stdout
    path = tmp_path / "t.toml"
    path.write_text(r.stdout)
    ok = runner.invoke(app, ["routes", "check", str(path)])
    assert ok.exit_code == 0 and "ok" in ok.stdout and "11 routes" in ok.stdout


def test_models_list_shows_the_default_pulled():
    r = runner.invoke(app, ["models", "list"])
    assert r.exit_code == 0
    row = next(ln for ln in r.stdout.splitlines() if "smollm2-13" in ln)
    assert "yes" in row


def test_unknown_model_is_a_clean_error(decisions_dir):
    r = runner.invoke(app, ["route", "--model", "no-such-model", "-c", str(decisions_dir), "hi"])
    assert r.exit_code == 1 and "unknown model" in r.output and "Traceback" not in r.output


def test_serve_help_keeps_the_section_names():
    r = runner.invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "[fallback] deadline_s" in r.output and r.output.count("[fallback]") == 3

