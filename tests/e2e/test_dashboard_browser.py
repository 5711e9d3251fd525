"""The dashboard in a real headless chromium (over CDP, no mock DOM): after a scripted run against
the emulator, the page loads with a read-only key, shows no console error, its numbers match
/metrics, and it follows new traffic live. LLMROUTER_DASHBOARD_SCREENSHOT=PATH also saves a screenshot (docs/dashboard.png)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import pytest

from browser import chromium
from dashboard_run import POLICY, ask, metrics, router, scripted_run
from llmrouter.server import create_app
from llmrouter.server.auth import KeyStore

REPO = Path(__file__).resolve().parents[2]
READ_PAGE = """JSON.stringify({
  routes: Object.fromEntries([...document.querySelectorAll('#routes tr[data-key]')].map(tr =>
    [tr.dataset.key, Number(tr.querySelector('td[data-k=answers]').dataset.value)])),
  requests: document.querySelector('[data-k=requests]').textContent,
  errors: document.querySelector('[data-k=errors]').textContent,
  spend: document.querySelector('[data-k=cost]').textContent,
  targets: Object.fromEntries([...document.querySelectorAll('#targets tr[data-key]')].map(tr =>
    [tr.dataset.key, [tr.querySelector('td[data-k=breaker]').textContent,
                      Number(tr.querySelector('td[data-k=failed_attempts]').dataset.value)]])),
  recent: document.querySelectorAll('#recent tr[data-key]').length,
  bars: document.querySelectorAll('#chart-routes rect').length,
  reports: document.querySelectorAll('#reports details').length,
})"""


@pytest.fixture
def keys(tmp_path):
    return KeyStore(tmp_path / "keys.json")


def test_the_page_shows_what_metrics_count(emu, serve, keys, tmp_path):
    reader, _ = keys.create("ops", role="read")
    full, _ = keys.create("acme", may_pin=True)
    app = create_app(router(emu, reports=[str(REPO / "bench" / "results")]), policy=POLICY, keys=keys,
                     stats_path=tmp_path / "stats.sqlite")
    with serve(app) as url, httpx.Client(base_url=url, timeout=10,
                                         headers={"authorization": f"Bearer {full}"}) as client:
        scripted_run(client, emu)
        prom = metrics(client)
        with chromium() as page:
            page.send("Page.navigate", url=f"{url}/dashboard?window=5m#key={reader}")
            page.wait_for("!!document.body && document.body.dataset.loaded === '1'")
            shown = json.loads(page.evaluate(READ_PAGE))
            shot = os.environ.get("LLMROUTER_DASHBOARD_SCREENSHOT")
            page.screenshot(Path(shot) if shot else tmp_path / "dashboard.png")
            assert ask(client, "cheap").status_code == 200  # live: the page polls and shows it
            page.wait_for("document.querySelector('[data-k=requests]').textContent === '9'")
            page.evaluate("document.querySelector('#windows button[data-window=all]').click()")
            page.wait_for("document.getElementById('status').textContent.endsWith('window all')")
            assert page.errors == []
    answers = {r: v for r, v in prom["llmrouter_route_answers_total:route"].items()}
    assert shown["routes"] == {**answers, "-": 0} and answers == {"cheap": 4, "mid": 2, "premium": 1}
    assert int(shown["requests"]) == sum(prom["llmrouter_requests_total"].values()) == 8
    assert int(shown["errors"]) == sum(prom["llmrouter_route_errors_total"].values()) == 1
    spend = sum(prom["llmrouter_route_cost_usd_total"].values())
    assert shown["spend"] == f"${spend:.6f}" and spend > 0
    failed = {t: prom["llmrouter_attempts_total"].get(f'outcome="failed",target="{t}"', 0) for t in "amp"}
    assert shown["targets"] == {t: ["closed", n] for t, n in failed.items()} and sum(failed.values()) == 2
    assert shown["recent"] == 8 and shown["bars"] == 4 and shown["reports"] >= 1


def test_without_a_key_the_page_asks_for_one(emu, serve, keys):
    keys.create("ops", role="read")
    with serve(create_app(router(emu), policy=POLICY, keys=keys)) as url:
        with chromium() as page:
            page.send("Page.navigate", url=f"{url}/dashboard")
            assert page.wait_for("!!document.getElementById('login') && !document.getElementById('login').hidden")
            assert page.evaluate("document.getElementById('main').hidden") is True
            # the 401 is the browser's own log entry for the refused fetch; nothing else went wrong
            assert all("401" in e for e in page.errors)
