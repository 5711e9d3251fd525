"""API keys: stored as salted hashes, required by the server when it has them, and what a key
grants (routes, pins, direct targets, its rate) decides what a client can buy (real sockets,
emulated targets; the decider is a fixed stand-in that always wants the expensive route)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from typer.testing import CliRunner

from llmrouter.cli import app
from llmrouter.config import Config
from llmrouter.router import Router
from llmrouter.server import create_app
from llmrouter.server.auth import KeyStore
from llmrouter.testing import fleet
from llmrouter.testing.fakes import FixedDecider

HELLO = {"model": "router", "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture
def keys(tmp_path):
    return KeyStore(tmp_path / "keys.json")


@pytest.fixture
def served(emu, serve, keys):
    price = {"input_price": 1000.0, "output_price": 1000.0}  # USD per million tokens: a cent an answer
    data = fleet(emu, {"main": ["a"], "premium": ["p"]}, a=price, p=price).to_dict()
    data["rules"] = [{"name": "pins", "when": {"pin": ["main", "premium"]}, "then": {"use_pin": True}},
                     {"name": "gold", "when": {"user_tier": ["gold"]}, "then": {"route": "main"}},
                     {"name": "kiosk", "when": {"surface": ["kiosk"]}, "then": {"route": "main"}}]
    router = Router(Config.from_dict(data), decider=FixedDecider("premium"), cache=None)
    with serve(create_app(router, keys=keys)) as url:
        with httpx.Client(base_url=url, timeout=10) as client:
            yield client


def bearer(secret: str) -> dict[str, str]:
    return {"authorization": f"Bearer {secret}"}


def test_the_key_file_holds_hashes_and_verification_is_exact(keys, tmp_path):
    secret, record = keys.create("acme", tier="free")
    stored = (tmp_path / "keys.json").read_text()
    assert secret.split("-", 2)[2] not in stored and record.hash in stored
    assert keys.verify(secret).id == record.id
    for wrong in ("", secret[:-1] + ("A" if secret[-1] != "A" else "B"), "sk-live-123", f"llmr-{record.id}-x",
                  secret.replace(record.id, "000000000000")):
        assert keys.verify(wrong) is None
    other = KeyStore(tmp_path / "keys.json")  # another process revokes: this one sees it
    assert other.revoke(record.id) and keys.verify(secret) is None


def test_no_key_no_service(served, keys):
    r = served.post("/v1/chat/completions", json=HELLO)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert served.post("/v1/chat/completions", json=HELLO, headers=bearer("llmr-abc-def")).status_code == 401
    assert served.get("/v1/models").status_code == 401 and served.get("/metrics").status_code == 401
    assert served.post("/v1/feedback", json={"id": "x", "score": 1}).status_code == 401
    assert served.get("/healthz").status_code == 200  # liveness stays open
    secret, _ = keys.create("acme")
    assert served.get("/v1/models", headers=bearer(secret)).status_code == 200


def test_a_key_cannot_buy_what_it_was_not_given(served, keys, emu):
    limited, _ = keys.create("acme", routes=["main"])
    r = served.post("/v1/chat/completions", json=HELLO, headers=bearer(limited))
    assert r.status_code == 200 and r.headers["x-llmrouter-route"] == "main"  # the model wanted premium
    r = served.post("/v1/chat/completions", json=HELLO, headers={**bearer(limited), "x-llmrouter-pin": "premium"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "not_allowed"
    r = served.post("/v1/chat/completions", json={**HELLO, "model": "p"}, headers=bearer(limited))
    assert r.status_code == 403 and not emu.seen("p")


def test_grants_pin_and_bypass(served, keys):
    pinner, _ = keys.create("acme", may_pin=True)
    r = served.post("/v1/chat/completions", json=HELLO, headers={**bearer(pinner), "x-llmrouter-pin": "main"})
    assert r.status_code == 200 and r.headers["x-llmrouter-source"] == "rule" and r.headers["x-llmrouter-target"] == "a"
    direct, _ = keys.create("acme", may_bypass=True, targets=["a"])
    assert served.post("/v1/chat/completions", json={**HELLO, "model": "a"}, headers=bearer(direct)).status_code == 200
    assert served.post("/v1/chat/completions", json={**HELLO, "model": "p"}, headers=bearer(direct)).status_code == 403


def test_client_metadata_that_raises_spend_is_ignored_but_a_trusted_gateway_is_believed(served, keys):
    plain, _ = keys.create("acme", tier="free", may_pin=False)
    body = {**HELLO, "metadata": {"pin": "premium", "tier": "gold"}}  # in the body, not a header
    r = served.post("/v1/chat/completions", json=body, headers=bearer(plain))
    assert r.status_code == 403  # a pin it may not set, wherever it is sent
    gateway, _ = keys.create("edge", trusted_gateway=True)
    r = served.post("/v1/chat/completions", json=HELLO, headers={**bearer(gateway), "x-llmrouter-pin": "main"})
    assert r.status_code == 200 and r.headers["x-llmrouter-route"] == "main"


def test_a_key_past_its_rate_gets_429_with_retry_after(served, keys):
    secret, _ = keys.create("acme", rpm=2)
    codes = [served.post("/v1/chat/completions", json=HELLO, headers=bearer(secret)).status_code for _ in range(2)]
    r = served.post("/v1/chat/completions", json=HELLO, headers=bearer(secret))
    assert codes == [200, 200] and r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limit_exceeded" and 1 <= int(r.headers["retry-after"]) <= 60


def test_a_revoked_key_is_refused_at_once(served, keys):
    secret, record = keys.create("acme")
    assert served.get("/v1/models", headers=bearer(secret)).status_code == 200
    r = CliRunner().invoke(app, ["keys", "revoke", record.id, "--file", str(keys.path)])
    assert r.exit_code == 0
    assert served.get("/v1/models", headers=bearer(secret)).status_code == 401


def test_the_openai_sdk_authenticates_with_an_llmrouter_key(served, keys):
    secret, _ = keys.create("acme")
    base = f"{str(served.base_url).rstrip('/')}/v1"
    ok = openai.OpenAI(base_url=base, api_key=secret, max_retries=0)
    assert ok.chat.completions.create(**HELLO).choices[0].message.content == "p says: hello there"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=base, api_key="sk-not-ours", max_retries=0).chat.completions.create(**HELLO)


def test_keys_cli_creates_lists_and_never_stores_the_secret(tmp_path):
    path = tmp_path / "k.json"
    r = CliRunner().invoke(app, ["keys", "create", "--tenant", "acme", "--tier", "free", "--rpm", "60",
                                 "--routes", "main", "--may-pin", "--file", str(path)])
    assert r.exit_code == 0
    secret = r.stdout.strip()
    assert secret.startswith("llmr-") and secret.split("-", 2)[2] not in path.read_text()
    listed = CliRunner().invoke(app, ["keys", "list", "--file", str(path)], env={"COLUMNS": "200"})
    assert "acme" in listed.stdout and "free" in listed.stdout and "pin" in listed.stdout
    assert json.loads(path.read_text())["keys"][0]["routes"] == ["main"]


def test_serve_refuses_an_open_non_loopback_host(tmp_path):
    r = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0", "--port", "1"])
    assert r.exit_code == 1 and "without API keys" in r.output
    r = CliRunner().invoke(app, ["serve", "--keys", str(tmp_path / "none.json")])
    assert r.exit_code == 1 and "no key file" in r.output


def test_a_key_past_its_budget_or_token_rate_gets_429(served, keys):
    thrifty, rec = keys.create("acme", budget_usd=0.01)
    first = served.post("/v1/chat/completions", json=HELLO, headers=bearer(thrifty))
    assert first.status_code == 200  # 19 tokens at $1000/M: $0.019, past the budget after it
    r = served.post("/v1/chat/completions", json=HELLO, headers=bearer(thrifty))
    assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"
    assert KeyStore(keys.path) and __import__("llmrouter.server.auth", fromlist=["Spend"]).Spend(keys.path).spent_usd(
        rec.id) > 0.01  # kept on disk, for the next process too
    chatty, _ = keys.create("acme", tpm=10)
    assert served.post("/v1/chat/completions", json={**HELLO, "stream": True}, headers=bearer(chatty)).status_code == 200
    r = served.post("/v1/chat/completions", json=HELLO, headers=bearer(chatty))
    assert r.status_code == 429 and "tokens per minute" in r.json()["error"]["message"] and r.headers["retry-after"]


def test_metrics_carry_the_keys_tenant_never_a_clients(served, keys):
    secret, _ = keys.create("acme")
    body = {**HELLO, "metadata": {"tenant": "evil"}}
    assert served.post("/v1/chat/completions", json=body, headers=bearer(secret)).status_code == 200
    text = served.get("/metrics", headers=bearer(secret)).text
    assert 'llmrouter_tenant_answers_total{route="premium",tenant="acme"} 1' in text.replace(
        'tenant="acme",route="premium"', 'route="premium",tenant="acme"')
    assert 'tenant="evil"' not in text and 'llmrouter_tenant_cost_usd_total{tenant="acme"}' in text
    assert secret not in text and secret.split("-")[1] not in text  # neither the key nor its id


def test_the_route_table_can_name_the_key_file(tmp_path):
    import tomli_w

    data = Config.load().to_dict()
    data["auth"] = {"keys_file": "keys.json"}
    table = tmp_path / "routes.toml"
    table.write_text(tomli_w.dumps(data))
    cfg = Config.load(table)
    assert cfg.auth is not None and cfg.auth.keys_path(cfg.path) == tmp_path / "keys.json"
    assert Config.from_dict(cfg.to_dict()).auth == cfg.auth
    r = CliRunner().invoke(app, ["serve", "-c", str(table), "--host", "0.0.0.0"])
    assert r.exit_code == 1 and f"no key file at {tmp_path / 'keys.json'}" in r.output  # [auth] was read


def test_a_model_id_served_by_several_targets_needs_them_all_granted(keys):
    from llmrouter.server.auth import apply_grants
    from llmrouter.server.wire import HTTPError

    _, record = keys.create("acme", may_bypass=True, targets=["a"])
    assert apply_grants(record, {}, None, "shared-model", ("a",))["tenant"] == "acme"
    with pytest.raises(HTTPError) as refused:  # the chain would fall back to p, which the key may not call
        apply_grants(record, {}, None, "shared-model", ("a", "p"))
    assert refused.value.status == 403


@pytest.mark.parametrize("header", [{"x-llmrouter-tier": "gold"}, {"x-llmrouter-surface": "kiosk"}])
def test_a_clients_own_tier_and_surface_are_not_believed(served, keys, header):
    plain, _ = keys.create("acme")  # the rules send gold-tier and kiosk requests to main
    r = served.post("/v1/chat/completions", json=HELLO, headers={**bearer(plain), **header})
    assert r.status_code == 200 and r.headers["x-llmrouter-route"] == "premium"  # as if no header was sent
    gateway, _ = keys.create("edge", trusted_gateway=True)
    r = served.post("/v1/chat/completions", json=HELLO, headers={**bearer(gateway), **header})
    assert r.status_code == 200 and r.headers["x-llmrouter-route"] == "main" and r.headers["x-llmrouter-source"] == "rule"
