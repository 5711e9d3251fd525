"""The dashboard's JSON endpoints over real sockets (emulated targets): its numbers match /metrics
after a scripted run, savings follow the targets' prices, the aggregates survive a restart,
read-only keys read and only read, and request text stays out unless the table opts in."""

from __future__ import annotations

import sqlite3
import tomllib
from pathlib import Path

from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dashboard_run import POLICY, PRICES, ask, metrics, router, scripted_run
from typer.testing import CliRunner

from llmrouter.cli import app
from llmrouter.config import Config
from llmrouter.router import Router
from llmrouter.server import create_app
from llmrouter.server.auth import KeyStore
from llmrouter.types import Verdict

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def cost(target: str, usage: dict[str, int]) -> float:
    i, o = PRICES[target]
    return (usage["prompt_tokens"] * i + usage["completion_tokens"] * o) / 1e6


@pytest.fixture
def served(emu, serve, tmp_path):
    with serve(create_app(router(emu), policy=POLICY, stats_path=tmp_path / "stats.sqlite")) as url:
        with httpx.Client(base_url=url, timeout=10) as client:
            yield client


def test_the_numbers_match_the_metrics_after_a_scripted_run(served, emu):
    run = scripted_run(served, emu)
    stats = served.get("/v1/stats", params={"window": "5m"}).json()
    prom = metrics(served)
    routes = {r["route"]: r for r in stats["routes"]}
    for route, answers in prom["llmrouter_route_answers_total:route"].items():
        assert routes[route]["answers"] == answers
    assert {r: v["answers"] for r, v in routes.items() if v["answers"]} == {"cheap": 4, "mid": 2, "premium": 1}
    assert stats["totals"]["errors"] == sum(prom["llmrouter_route_errors_total"].values()) == 1
    assert stats["totals"]["cost_usd"] == pytest.approx(sum(prom["llmrouter_route_cost_usd_total"].values()))
    assert stats["totals"]["fallbacks"] == sum(prom["llmrouter_route_fallbacks_total"].values()) == 1
    assert stats["sources"] == {"rule": 7}
    assert routes["cheap"]["feedback"] == {"n": 2, "mean": 0.5}
    # savings: every answer priced on premium's first target (p) and on the baseline route's (m)
    answered = [u for us in run["usage"].values() for u in us]
    assert routes["cheap"]["cost_if_top_usd"] == pytest.approx(sum(cost("p", u) for u in run["usage"]["cheap"]))
    totals = stats["totals"]
    assert totals["cost_if_baseline_usd"] == pytest.approx(sum(cost("m", u) for u in answered))
    assert totals["saved_vs_baseline_usd"] == pytest.approx(totals["cost_if_baseline_usd"] - totals["cost_usd"])
    assert totals["saved_vs_top_usd"] == pytest.approx(sum(cost("p", u) for u in answered) - totals["cost_usd"])
    assert totals["saved_vs_top_usd"] > 0
    assert stats["tables"]["default"] == {"top_route": "premium", "top_target": "p", "baseline_route": "mid",
                                          "baseline_target": "m"}
    assert routes["mid"]["cost_if_baseline_usd"] == pytest.approx(sum(cost("m", u) for u in run["usage"]["mid"]))
    assert len(answered) == 7  # the stream's usage from its own final chunk
    assert routes["cheap"]["decision_ms"]["n"] == 4 and routes["cheap"]["e2e_ms"]["p95"] > 0
    assert sum(b["n"] for b in stats["confidence"]) == 7 and stats["confidence"][9]["n"] == 7
    targets = {t["target"]: t for t in stats["targets"]}
    assert targets["a"]["answers"] == 5 and targets["a"]["breaker"] == "closed"
    failed = {t: v for t, v in prom["llmrouter_attempts_total"].items() if 'outcome="failed"' in t}
    assert {t: targets[t]["failed_attempts"] for t in targets} == {"a": 0, "m": 1, "p": 1}
    assert sorted(failed.values()) == [1.0, 1.0] and 'target="m"' in str(failed) and 'target="p"' in str(failed)
    recent = stats["recent"]
    assert len(recent) == 8 and recent[0]["status"] == 400 and "text" not in recent[0]
    assert {r["route"] for r in recent} == {"cheap", "mid", "premium", "-"}


def test_windows_and_bad_input(served, emu):
    ask(served, "cheap")
    for window in ("5m", "1h", "24h", "all"):
        body = served.get("/v1/stats", params={"window": window}).json()
        assert body["window"] == window and body["totals"]["requests"] == 1
    r = served.get("/v1/stats", params={"window": "7d"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_window"
    assert served.get("/dashboard/../app.py").status_code == 404
    assert served.get("/dashboard/nope.js").status_code == 404
    assert served.get("/v1/reports/0/0%2F").status_code == 404  # a name with a slash: 404, not a redirect
    assert served.get("/dashboard/dashboard.js/").status_code == 404
    assert served.get("/v1/reports/%C2%B9/x.md").status_code == 404  # '¹' is a digit to str.isdigit, not to int()
    page = served.get("/dashboard")
    assert page.status_code == 200 and "dashboard.js" in page.text and "http" not in page.text.replace(
        "http-equiv", "")  # no CDN: nothing is loaded from another origin


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(window=st.text(max_size=30), name=st.text(min_size=1, max_size=40), folder=st.text(min_size=1, max_size=5))
def test_any_window_or_report_path_gets_a_clear_answer(served, window, name, folder):
    r = served.get("/v1/stats", params={"window": window})
    assert r.status_code == (200 if window in ("5m", "1h", "24h", "all") else 400)
    r = served.get(f"/v1/reports/{quote(folder, safe='')}/{quote(name, safe='')}")
    assert r.status_code in (200, 404) and (r.status_code == 404 or name.endswith((".md", ".png", ".json")))


def test_the_aggregates_survive_a_restart(emu, serve, tmp_path):
    path = tmp_path / "stats.sqlite"
    for _ in range(2):
        with serve(create_app(router(emu), policy=POLICY, stats_path=path)) as url:
            with httpx.Client(base_url=url, timeout=10) as client:
                assert ask(client, "mid").status_code == 200
                totals = client.get("/v1/stats?window=all").json()["totals"]
    assert totals["requests"] == 2 and totals["answers"] == 2


def test_request_text_stays_out_unless_the_table_opts_in(emu, serve, tmp_path):
    secret_text = "my card number is 4111 1111"
    for opt_in in (False, True):
        path = tmp_path / f"stats-{opt_in}.sqlite"
        with serve(create_app(router(emu, request_text=opt_in), policy=POLICY, stats_path=path)) as url:
            with httpx.Client(base_url=url, timeout=10) as client:
                assert ask(client, "cheap", secret_text).status_code == 200
                recent = client.get("/v1/stats").json()["recent"][0]
        stored = b"".join(p.read_bytes() for p in tmp_path.glob(f"stats-{opt_in}.sqlite*"))
        assert (recent.get("text") == secret_text) is opt_in
        assert (secret_text.encode() in stored) is opt_in


def test_read_keys_only_read_and_call_keys_only_call(emu, serve, tmp_path):
    keys = KeyStore(tmp_path / "keys.json")
    reader, _ = keys.create("ops", role="read")
    full, _ = keys.create("acme")
    caller, _ = keys.create("globex", role="call")
    with serve(create_app(router(emu), policy=POLICY, keys=keys)) as url:
        with httpx.Client(base_url=url, timeout=10) as c:
            auth = lambda s: {"authorization": f"Bearer {s}"}  # noqa: E731
            assert c.get("/v1/stats").status_code == 401 and c.get("/v1/reports").status_code == 401
            assert c.get("/dashboard").status_code == 200  # the page itself holds no numbers
            r = c.post("/v1/chat/completions", headers=auth(reader),
                       json={"model": "router", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 403 and "read-only" in r.json()["error"]["message"]
            assert c.post("/v1/feedback", headers=auth(reader), json={"id": "x", "score": 1}).status_code == 403
            r = c.post("/v1/chat/completions", headers=auth(full),
                       json={"model": "router", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200
            for who in (reader, full):
                assert c.get("/metrics", headers=auth(who)).status_code == 200
                stats = c.get("/v1/stats", headers=auth(who)).json()
                assert stats["totals"]["answers"] == 1 and stats["tenants"][0]["tenant"] == "acme"
            r = c.post("/v1/chat/completions", headers=auth(caller),
                       json={"model": "router", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200 and c.get("/v1/models", headers=auth(caller)).status_code == 200
            for path in ("/v1/stats", "/v1/reports", "/metrics"):
                r = c.get(path, headers=auth(caller))
                assert r.status_code == 403 and r.json()["error"]["code"] == "not_allowed", path


def test_keys_create_takes_a_role(tmp_path):
    runner, path = CliRunner(), str(tmp_path / "keys.json")
    r = runner.invoke(app, ["keys", "create", "--tenant", "ops", "--role", "read", "--file", path])
    assert r.exit_code == 0 and r.stdout.startswith("llmr-")
    assert [k.role for k in KeyStore(path).keys.values()] == ["read"]
    r = runner.invoke(app, ["keys", "create", "--tenant", "ops", "--role", "admin", "--file", path])
    assert r.exit_code != 0 and "--role must be full, read or call" in r.output


def test_the_latest_reports_are_listed_and_served_from_their_folders(emu, serve, tmp_path):
    evals, bench = tmp_path / "eval-report", tmp_path / "bench-results"
    evals.mkdir(), bench.mkdir()
    (evals / "report.md").write_text("# Router evaluation\naccuracy 0.9\n")
    (evals / "calibration.png").write_bytes(b"\x89PNG fake")
    (bench / "latency.md").write_text("# Decision latency\n")
    (bench / "latency.png").write_bytes(b"\x89PNG fake")
    (tmp_path / "secret.md").write_text("not a report")
    cfg = router(emu, reports=[str(evals), str(bench)])
    with serve(create_app(cfg, policy=POLICY)) as url:
        with httpx.Client(base_url=url, timeout=10) as c:
            listing = c.get("/v1/reports").json()
            assert listing["eval"]["plots"] == ["calibration.png"]
            assert [b["name"] for b in listing["bench"]] == ["latency.md"]
            assert c.get("/v1/reports/0/report.md").text.startswith("# Router evaluation")
            assert c.get("/v1/reports/1/latency.png").headers["content-type"] == "image/png"
            for bad in ("/v1/reports/0/..%2Fsecret.md", "/v1/reports/2/latency.md", "/v1/reports/0/keys.json",
                        "/v1/reports/x/report.md"):
                assert c.get(bad).status_code == 404


def test_a_broken_stats_file_never_fails_a_request(emu, serve, tmp_path):
    path = tmp_path / "stats.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with serve(create_app(router(emu), policy=POLICY, stats_path=path)) as url:
        with httpx.Client(base_url=url, timeout=10) as client:
            assert ask(client, "cheap").status_code == 200
            assert client.get("/v1/stats").json()["totals"]["answers"] == 1  # kept in memory instead
    with pytest.raises(sqlite3.DatabaseError):
        sqlite3.connect(path).execute("SELECT * FROM buckets").fetchall()


class Unsure:
    """A decider that always leans to the cheapest route, unsure (0.5 < escalation.min_confidence)."""

    name, model_id = "unsure", "unsure"

    def decide(self, text, *, explain=False):
        return Verdict(route="quick", scores={"quick": 0.5, "solid": 0.3, "deep": 0.2})


def test_escalations_cap_hits_and_their_alerts(emu, serve):
    data = tomllib.loads((EXAMPLES / "escalation.toml").read_text())
    for name, t in data["targets"].items():
        t["base_url"] = emu.base_url(name, "anthropic" if t.get("provider") == "anthropic" else "openai")
        t.pop("api_key_env", None)
    data["router"]["cache"] = False
    data["escalation"].update(max_rate=0.5, min_requests=2, per_surface={})
    cfg = Config.from_dict(data, path=str(EXAMPLES / "escalation.toml"))
    with serve(create_app(Router(cfg, decider=Unsure()), policy=POLICY)) as url:
        with httpx.Client(base_url=url, timeout=10) as client:
            for i in range(8):
                assert ask(client, "", f"question {i}").status_code == 200
            stats = client.get("/v1/stats?window=5m").json()
            prom = metrics(client)
    t = stats["totals"]
    assert t["escalations"] == sum(prom["llmrouter_route_escalations_total"].values()) > 0
    assert 0 < t["cap_hits"] < 8 and t["escalations"] + t["cap_hits"] == 8
    kinds = [a["kind"] for a in stats["alerts"]]
    assert kinds.count("escalation_cap") == prom["llmrouter_alerts_total"]['kind="escalation_cap"'] == 1
    assert stats["sources"] == {"model": 8} and sum(b["n"] for b in stats["confidence"]) == 8
    assert stats["confidence"][5]["n"] == t["cap_hits"]  # kept on quick at 0.5; the escalated carry solid's
