"""A scripted run for the dashboard tests: three priced routes on emulated targets, a few answers,
a fallback, a stream, an error and feedback; and /metrics parsed for comparison."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any

import httpx

from llmrouter.config import Config, FallbackPolicy
from llmrouter.testing import Behavior, Emulator, FakeRouter, fleet

POLICY = FallbackPolicy(deadline_s=5, backoff_base_s=0.01, backoff_cap_s=0.05, max_retries=0)
PRICES = {"a": (0.1, 0.4), "m": (1.0, 4.0), "p": (10.0, 40.0)}  # USD per million input, output tokens


def table(emu: Emulator, **dashboard: Any) -> Config:
    prices = {n: {"input_price": i, "output_price": o} for n, (i, o) in PRICES.items()}
    data = fleet(emu, {"cheap": ["a"], "mid": ["m", "a"], "premium": ["p"]}, **prices).to_dict()
    data["dashboard"] = {"baseline_route": "mid", **dashboard}
    return Config.from_dict(data)


def router(emu: Emulator, **dashboard: Any) -> FakeRouter:
    return FakeRouter(table(emu, **dashboard))


def ask(client: httpx.Client, route: str, text: str = "hello there", **extra: Any) -> httpx.Response:
    body = {"model": "router", "messages": [{"role": "user", "content": text}], "metadata": {"route": route}, **extra}
    return client.post("/v1/chat/completions", json=body)


def scripted_run(client: httpx.Client, emu: Emulator) -> dict[str, Any]:
    """Requests of every kind; returns the usage of each answer by route and the answers' ids."""
    usage: dict[str, list[dict[str, int]]] = defaultdict(list)
    ids = []
    for i in range(4):
        r = ask(client, "cheap", f"question number {i}")
        assert r.status_code == 200, r.text
        usage["cheap"].append(r.json()["usage"])
        ids.append(r.json()["id"])
    emu.script("m", Behavior(status=500))  # the first mid request falls back to a
    for _ in range(2):
        r = ask(client, "mid", "a longer question about the meaning of it all")
        assert r.status_code == 200, r.text
        usage["mid"].append(r.json()["usage"])
    with client.stream("POST", "/v1/chat/completions", json={
            "model": "router", "messages": [{"role": "user", "content": "stream me"}], "metadata": {"route": "premium"},
            "stream": True, "stream_options": {"include_usage": True}}) as s:
        assert s.status_code == 200
        body = s.read().decode()
    assert "[DONE]" in body
    usage["premium"] += [json.loads(e[6:])["usage"] for e in body.split("\n\n") if '"usage"' in e]
    emu.script("p", Behavior(status=400))
    assert ask(client, "premium").status_code == 400  # rejected by the target: an error on premium
    for rid, score in ((ids[0], 1.0), (ids[1], 0.0)):
        assert client.post("/v1/feedback", json={"id": rid, "score": score}).status_code == 202
    return {"usage": usage, "ids": ids}


LINE = re.compile(r'^(\w+)(?:\{(.*)\})? (\S+)$')


def metrics(client: httpx.Client) -> dict[str, dict[str, float]]:
    """/metrics as {name: {label string: value}}, and summed per route under name + ':route'."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for line in client.get("/metrics").text.splitlines():
        m = LINE.match(line)
        if not m or line.startswith("#"):
            continue
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        out[name][labels] += value
        route = re.search(r'route="([^"]*)"', labels)
        if route:
            out[name + ":route"][route.group(1)] += value
    return out
