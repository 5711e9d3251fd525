"""Decide on a serving engine: the same router prompt and route enum, sent as a JSON-schema request.

For GPU boxes and fleets, routing can run on an engine built for throughput (llama.cpp server,
vLLM, Ollama's /v1...) instead of in-process. The engine gets the router prompt's turns and a
`response_format` whose `route` is the table's enum; llmrouter validates whatever comes back (a
remote answer may be stale or wrong) and turns any failure into DeciderError, which the router
answers with the default route.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import httpx

from llmrouter.config import Config, RemoteDeciderSettings, RouterSettings, RouteTable
from llmrouter.errors import ConfigError, DeciderError
from llmrouter.head.claims import content_view
from llmrouter.prompts import SENTINEL, RouterPrompt, precap_text
from llmrouter.types import Timings, Verdict
from llmrouter.validate import route_output_type


def build(config: Config, prompt: RouterPrompt) -> RemoteDecider:
    """The remote decider a route table's [router.remote] describes."""
    remote = config.router.remote
    if remote is None:
        raise ConfigError("[router] decider = \"remote\" needs a [router.remote] section (base_url, model)")
    return RemoteDecider(remote, config.router, config.table, prompt)


class RemoteDecider:
    """Asks an OpenAI-compatible engine for `{"route": <enum>}`; thread-safe (one httpx client)."""

    name = "remote"

    def __init__(self, remote: RemoteDeciderSettings, settings: RouterSettings, table: RouteTable,
                 prompt: RouterPrompt, *, transport: httpx.BaseTransport | None = None) -> None:
        self.remote, self.settings, self.table = remote, settings, table
        self.model_id = f"remote:{remote.base_url}|{remote.model}"
        self.turns = prompt.turns(table, examples_per_route=settings.examples_per_route)
        schema = route_output_type(table).model_json_schema()
        self.response_format = {"type": "json_schema",
                                "json_schema": {"name": "route_decision", "schema": schema, "strict": True}}
        headers = {}
        if remote.api_key_env and os.environ.get(remote.api_key_env):
            headers["authorization"] = f"Bearer {os.environ[remote.api_key_env]}"
        self.client = httpx.Client(base_url=remote.base_url.rstrip("/"), headers=headers,
                                   timeout=remote.timeout_s, transport=transport)
        self.view = content_view() if settings.content_view else None  # [router] content_view

    def messages(self, text: str) -> list[dict[str, str]]:
        return [{"role": role, "content": body.replace(SENTINEL, text)} for role, body in self.turns]

    def decide(self, text: str, *, explain: bool = False) -> Verdict:
        t0 = time.perf_counter()
        text, truncated = precap_text(text, self.settings.max_request_tokens * 4)
        text = self.view(text) if self.view is not None else text
        body: dict[str, Any] = {
            "model": self.remote.model, "messages": self.messages(text), "temperature": 0,
            "max_tokens": 64 if explain else 24, "response_format": self.response_format,
        }
        if self.remote.logprobs:
            body.update(logprobs=True, top_logprobs=20)
        try:
            resp = self.client.post("/chat/completions", json=body)
        except httpx.TimeoutException:
            raise DeciderError(f"remote decider timed out after {self.remote.timeout_s}s") from None
        except httpx.HTTPError as exc:
            raise DeciderError(f"remote decider unreachable: {type(exc).__name__}") from None
        if resp.status_code != 200:
            raise DeciderError(f"remote decider answered HTTP {resp.status_code}")
        try:
            choice = resp.json()["choices"][0]
            content = choice["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise DeciderError("remote decider sent a response without choices[0].message.content") from None
        route = _route_of(content)
        total = round((time.perf_counter() - t0) * 1000, 3)
        return Verdict(route=route if route is not None else str(content), scores=self.scores(choice, route),
                       truncated=truncated, timings=Timings(total_ms=total, decode_ms=total),
                       decider="remote")

    def scores(self, choice: dict[str, Any], route: str | None) -> dict[str, float]:
        """P(route) from the top logprobs at the token where the route name starts, if sent."""
        try:
            tokens = choice["logprobs"]["content"]
        except (KeyError, TypeError):
            return {}
        text = ""
        for tok in tokens or []:
            piece = str(tok.get("token", ""))
            opened = text.endswith(('"route": "', '"route":"'))
            if opened or (text.rstrip().endswith('"route":') and piece.lstrip(' "')):
                return self._route_probs(tok.get("top_logprobs") or [])
            text += piece
        return {}

    def _route_probs(self, alternatives: list[dict[str, Any]]) -> dict[str, float]:
        """Spread each alternative token's probability over the routes it can start; renormalise."""
        probs: dict[str, float] = {}
        for alt in alternatives:
            piece = str(alt.get("token", "")).lstrip(' "')
            starts = [n for n in self.table.names if piece and n.startswith(piece)]
            for name in starts:
                probs[name] = probs.get(name, 0.0) + math.exp(float(alt["logprob"])) / len(starts)
        total = sum(probs.values())
        return {n: p / total for n, p in probs.items()} if total > 0 else {}

    def close(self) -> None:
        self.client.close()


def _route_of(content: Any) -> str | None:
    if not isinstance(content, str):
        return None
    try:
        data = json.loads(content)
    except ValueError:
        return None
    return data.get("route") if isinstance(data, dict) and isinstance(data.get("route"), str) else None
