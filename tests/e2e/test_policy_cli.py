"""`llmrouter stats` on events the router really logs, and `llmrouter replay` on the real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmrouter import log as logmod
from llmrouter.cli import app
from llmrouter.types import Completion, Usage
from llmrouter.config import Config
from llmrouter.types import Verdict
from llmrouter.router import Router
from llmrouter.types import Request

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
runner = CliRunner()


class Scripted:
    name, model_id = "scripted", "scripted"

    def decide(self, text, *, explain=False):
        scores = {"easy": 0.3, "hard": 0.7} if "prove" in text else {"easy": 0.8, "hard": 0.2}
        if "what" in text:
            scores = {"easy": 0.6, "hard": 0.4}  # unsure: escalates under min_confidence 0.75
        return Verdict(route=max(scores, key=scores.get), scores=scores)


def test_stats_summarises_real_events(tmp_path):
    cfg = Config.load(EXAMPLES / "difficulty.toml").with_router(cache=False)
    router = Router(Config.from_dict({**cfg.to_dict(), "replay": {"log_requests": True},
                                      "escalation": {"min_confidence": 0.75}}), decider=Scripted())
    log = tmp_path / "log.jsonl"
    with log.open("w") as f:
        f.write("not json\n")
        logmod.configure(fmt="json", level="info", stream=f)  # the real renderer, as `serve` logs
        try:
            for text in ("hi", "prove it", "prove more", "what time is it"):
                req = Request.of(text, surface="web", key="sk-secret-key-123456",
                                 tenant="acme" if text != "hi" else "globex")
                d = router.decide(req)
                done = Completion(text="ok", target="small" if d.route == "easy" else "frontier", model="m",
                                  route=d.route, decision=d, usage=Usage(prompt_tokens=1000, completion_tokens=500),
                                  latency_ms=120.0)
                router.answers.settle(req, done)
        finally:
            logmod.configure(fmt="json", level="warning")
        f.write("{broken\n")
    assert "sk-secret" not in log.read_text()  # the caller's key is never logged
    result = runner.invoke(app, ["stats", str(log), "--json"])
    assert result.exit_code == 0, result.output
    s = json.loads(result.output)
    assert s["decisions"] == 4 and s["routes"]["hard"]["decisions"] == 3
    hard = s["routes"]["hard"]
    assert hard["escalations"] == 1 and hard["by_surface"] == {"web": 3} and hard["answers"] == 3
    assert hard["cost_usd"] == pytest.approx(3 * (1000 * 3.0 + 500 * 15.0) / 1e6)
    assert s["tenants"]["acme"]["answers"] == 3 and s["tenants"]["acme"]["tokens"] == 4500
    assert s["tenants"]["acme"]["cost_usd"] == pytest.approx(hard["cost_usd"]) and s["tenants"]["globex"]["answers"] == 1
    table = runner.invoke(app, ["stats", str(log)], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "acme" in table.output and "globex" in table.output
    empty = tmp_path / "empty.log"
    empty.write_text("nothing here\n")
    bad = runner.invoke(app, ["stats", str(empty)])
    assert bad.exit_code == 1 and "no llmrouter events" in bad.output


@pytest.mark.model
def test_replay_reports_route_changes_cost_and_latency(tmp_path):
    reqs = tmp_path / "requests.jsonl"
    rows = [{"prompt": "Prove that sqrt(2) is irrational.", "route": "easy"},
            {"messages": [{"role": "user", "content": "hi!"}], "route": "easy", "metadata": {"tier": "vip"}},
            {"prompt": "What is 2+2?", "route": "hard"}]
    reqs.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    other = tmp_path / "other.toml"
    data = Config.load(EXAMPLES / "difficulty.toml").to_dict()
    data["rules"] = [{"name": "vip", "when": {"user_tier": "vip"}, "then": {"route": "hard"}}]
    other.write_text(Config.from_dict(data).to_toml())
    result = runner.invoke(app, ["replay", str(reqs), "--config", str(other), "--baseline",
                                 str(EXAMPLES / "difficulty.toml"), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["requests"] == 3 and sum(report["confusion"].values()) == 3
    assert report["confusion"].get("easy->hard", 0) >= 1  # the vip rule moves "hi!" up, whatever the model says
    assert report["cost_usd"]["delta"] == pytest.approx(report["cost_usd"]["new"] - report["cost_usd"]["old"], abs=1e-6)
    assert "| old \\ new |" in (tmp_path / "r.md").read_text()
    none = tmp_path / "none.jsonl"
    none.write_text('{"event": "decision", "route": "easy"}\n')
    bad = runner.invoke(app, ["replay", str(none), "--config", str(other)])
    assert bad.exit_code == 1 and "log_requests" in bad.output
