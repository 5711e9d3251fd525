"""An OpenAI-compatible server: point any OpenAI client at it and every request is routed.

    POST /v1/chat/completions   model="router" (or "router:<table>") routes; a target's name
                                or model id calls that target directly; stream or not
    GET  /v1/models             the router, its tables and every concrete target
    GET  /healthz               liveness, and each target's circuit state
    GET  /metrics               Prometheus text (per route, target and surface too: metrics.py)
    POST /v1/feedback           {"id": "<chat completion id>", "score": 0..1}: rate an answer
    GET  /dashboard, /v1/stats  traffic, savings, latency tax, recent decisions (dashboard.py)

Routing metadata travels in `x-llmrouter-*` response headers (route, source, confidence, target,
attempts, fallbacks); a request may shorten its deadline with `x-llmrouter-deadline: SECONDS`.
Bad input gets an OpenAI-style error (`{"error": {"message", "type", "code"}}`) with a 4xx, never
a 500 (wire.py). The handlers are module functions; everything they share is the AppState on
`app.state.llmrouter`: no module globals.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from llmrouter.completion import CompletionStream
from llmrouter.router import ROUTER_MODEL, asks_for_routing
from llmrouter.config import FallbackPolicy
from llmrouter.errors import ProviderError, RequestError, UnknownModel
from llmrouter.fallback import CircuitBreaker, safe_log
from llmrouter.router import Router
from llmrouter.server import dashboard as dash
from llmrouter.server import wire
from llmrouter.server.auth import KeyRecord, KeyStore, Meter, apply_grants, authenticate, may_read, may_write
from llmrouter.server.metrics import ServerMetrics
from llmrouter.server.stats_recorder import Recorder
from llmrouter.server.stats_store import StatsStore
from llmrouter.server.wire import HTTPError
from llmrouter.state.aio import aread_all, clients_of
from llmrouter.state.link import batch_on
from llmrouter.types import Completion, Request

log = structlog.get_logger("llmrouter")


@dataclass
class AppState:
    """Everything the handlers share: the routers by table name, the metrics, the body limit."""

    routers: dict[str, Router]
    default: Router
    metrics: ServerMetrics
    max_body_bytes: int = wire.MAX_BODY_BYTES
    keys: KeyStore | None = None  # None: no authentication (loopback or --insecure only)
    meter: Meter | None = None  # the keys' rates and spend
    dashboard: dash.Dashboard | None = None  # /dashboard, /v1/stats and their store

    def caller(self, request: HTTPRequest) -> KeyRecord | None:
        """The authenticated key (None without keys); raises 401 (its limits: `admit`)."""
        if self.keys is None:
            return None
        return authenticate(self.keys, request.headers)

    async def admit(self, key: KeyRecord | None, router: Router, req: Request, model: str) -> None:
        """Count the request against its key's limits (429 past one), reading with it what the
        routing policy will read before the model: at most one round trip for both, on the asyncio
        client (none when all of it is known here: state/headroom.py)."""
        if key is None or self.meter is None:
            return
        admission = self.meter.admission(key)
        link = router.state.link if router.state is not None else None
        if asks_for_routing(model) and link is self.meter.link:
            refusal = (await aread_all(link, [admission, router.policy.prefetch(req)]))[0]
        else:
            refusal = (await aread_all(self.meter.link, [admission]))[0]
        if refusal is not None:
            raise refusal

    def settle(self, key: KeyRecord | None, done: Completion | None) -> None:
        """Charge an answer to the key that asked for it (tokens per minute, spend)."""
        if key is not None and done is not None and self.meter is not None:
            self.meter.settle(key, done.usage.prompt_tokens + done.usage.completion_tokens, done.cost_usd)

    def charges(self, router: Router) -> contextlib.AbstractContextManager[None]:
        """Where an answer's charges to shared state wait to go together (nothing without [state])."""
        return batch_on(router.state.link if router.state is not None else None)

    def pick(self, model: str) -> Router:
        """The router a request's `model` names: router:<table>, else the default table's."""
        if model.startswith(ROUTER_MODEL + ":"):
            name = model.split(":", 1)[1]
            if name not in self.routers:
                raise UnknownModel(f"unknown route table {name!r}; served: {', '.join(sorted(self.routers))}")
            return self.routers[name]
        return self.default

    @property
    def recorder(self) -> Recorder:
        assert self.dashboard is not None
        return self.dashboard.recorder

    def breakers(self) -> dict[str, CircuitBreaker]:
        return {n: b for r in self.routers.values() for n, b in r.chain.breakers.items()}

    def hedges(self) -> Counter[str]:
        """Hedges sent, won and denied, over every table's chain."""
        return sum((r.chain.hedges.counts for r in self.routers.values()), Counter())


def table_name(router: Router) -> str:
    """The name `router:<name>` selects: the config file's stem, or "default"."""
    path = router.config.path
    return Path(path).stem if path else "default"


def create_app(router: Router, *, tables: Mapping[str, Router] | None = None, policy: FallbackPolicy | None = None,
               max_body_bytes: int = wire.MAX_BODY_BYTES, keys: KeyStore | None = None,
               stats_path: Path | None = None) -> Starlette:
    """The server for `router` (and more route tables in `tables`, reachable as router:<name>);
    `policy` replaces the tables' own [fallback] settings; with `keys`, every endpoint but
    /healthz (and the dashboard's static page) needs an API key (server/auth.py); the dashboard's
    aggregates persist in `stats_path` (SQLite; None: in memory)."""
    routers = {table_name(router): router, **(tables or {})}
    metrics = ServerMetrics({s for r in routers.values() for s in r.config.policy.surfaces})
    settings = router.config.dashboard
    recorder = Recorder(StatsStore(stats_path, settings.retention_days * 86400, settings.recent), metrics.surface)
    for r in routers.values():
        if policy is not None:
            r.use_fallback(policy)
        r.chain.listeners.append(metrics.attempt)
        r.chain.listeners.append(recorder.attempt)
        r.policy.on_alert(metrics.alert)
        r.policy.on_alert(recorder.alert)
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
            Route("/v1/feedback", feedback, methods=["POST"]),
            *dash.ROUTES,
        ],
        exception_handlers={404: not_found, 405: not_allowed},
        lifespan=lifespan,
    )
    state = AppState(routers, router, metrics, max_body_bytes, keys,
                     Meter(keys, router.state) if keys is not None else None)
    state.dashboard = dash.Dashboard(recorder.store, recorder, {n: r.config for n, r in routers.items()},
                                     settings.report_dirs(router.config.path),
                                     lambda: {n: b.state for n, b in state.breakers().items()})
    app.state.llmrouter = state
    return app


def state_of(request: HTTPRequest) -> AppState:
    state: AppState = request.app.state.llmrouter
    return state


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    for r in app.state.llmrouter.routers.values():  # the server's event loop ends: close its connections
        await r.chain.aclose()
        if r.state is not None:
            await clients_of(r.state.link).aclose()
    if app.state.llmrouter.dashboard is not None:
        app.state.llmrouter.dashboard.close()


async def chat(request: HTTPRequest) -> Response:
    state = state_of(request)
    metrics = state.metrics
    t0 = time.perf_counter()
    metrics.in_flight += 1
    route, status, req, decision = "", 200, None, None
    try:
        key = state.caller(request)
        body = await wire.read_body(request, state.max_body_bytes)
        router = state.pick(body.model)
        meta = wire.http_metadata(request.headers, body.metadata, body.tools)
        allowed = None
        if key is not None:
            named = None if asks_for_routing(body.model) else router.targets_named(body.model) or (body.model,)
            pin = meta.get("pin")
            meta = apply_grants(key, meta, pin if isinstance(pin, str) else None, body.model, named)
            allowed = tuple(key.routes) or None
        try:
            req = Request.of({"messages": body.messages, "metadata": meta})
        except RequestError as exc:
            raise HTTPError(400, exc.message, code="invalid_request") from None
        await state.admit(key, router, req, body.model)
        deadline = wire.deadline(request, state.default.fallback.deadline_s)
        if body.stream:
            stream = await router.open_stream(req, model=body.model, deadline_s=deadline, allowed=allowed,
                                              **body.params())
            route, decision = stream.route, stream.decision
            metrics.decision(stream.decision, req)
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            return StreamingResponse(
                _streamed(metrics, stream, req, include_usage, t0, _finisher(state, key, router, stream, req, t0)),
                media_type="text/event-stream",
                headers={**wire.meta_headers(stream.decision, stream.target, stream.attempts),
                         "cache-control": "no-cache"})
        with state.charges(router):  # the route's ledger and the key's tokens and spend: sent together
            done = await router.acomplete(req, model=body.model, deadline_s=deadline, allowed=allowed, **body.params())
            state.settle(key, done)
        route = done.route or ""
        metrics.request(route, done.target, "ok")
        response_id = wire.new_id()
        metrics.decision(done.decision, req)
        metrics.answer(done, req, response_id)
        state.recorder.answered(router.config, done, req, time.perf_counter() - t0)
        return JSONResponse(wire.completion_json(done, response_id),
                            headers=wire.meta_headers(done.decision, done.target, done.attempts))
    except Exception as exc:
        err = wire.http_error(exc)
        status = err.status
        if err.status >= 500 and not isinstance(exc, ProviderError):
            # where it failed, never what it said: an exception's message may quote the request
            safe_log("error", "server_error", error_type=type(exc).__name__, frames=wire.frames_of(exc))
        metrics.request(route, "", f"http_{err.status}")
        metrics.error(route, req, err.status)
        state.recorder.failed(route, req, err.status, time.perf_counter() - t0, decision)
        return err.response()
    finally:
        metrics.in_flight -= 1
        # for a stream, the time to its first token; else to the whole answer
        metrics.response_started(time.perf_counter() - t0, status)


def _finisher(state: AppState, key: KeyRecord | None, router: Router, stream: CompletionStream, req: Request,
              t0: float) -> Callable[[Completion | None, str], None]:
    """What a stream's end settles: the key's spend, and the dashboard's count (an answer or a cut)."""
    def finish(done: Completion | None, outcome: str) -> None:
        state.settle(key, done)
        if done is not None and outcome == "ok":
            state.recorder.answered(router.config, done, req, time.perf_counter() - t0)
        else:
            state.recorder.failed(stream.route, req, 502, time.perf_counter() - t0, stream.decision, stream.target)

    return finish


async def _streamed(metrics: ServerMetrics, stream: CompletionStream, req: Request, include_usage: bool,
                    t0: float, finish: Callable[[Completion | None, str], None]) -> AsyncIterator[bytes]:
    response_id = wire.new_id()

    def ended(outcome: str) -> None:
        metrics.request(stream.route, stream.target, outcome)
        finish(stream.completion, outcome)
        if stream.completion is not None:
            metrics.answer(stream.completion, req, response_id)
        metrics.stream_ended(time.perf_counter() - t0)

    async for part in wire.sse(stream, response_id, include_usage, ended):
        yield part


def keyed(handler: Callable[[HTTPRequest], Awaitable[Response]]) -> Callable[[HTTPRequest], Awaitable[Response]]:
    """`handler` behind the API keys, when the server has them (401 in OpenAI's shape)."""
    @functools.wraps(handler)
    async def guarded(request: HTTPRequest) -> Response:
        try:
            state_of(request).caller(request)
        except HTTPError as err:
            return err.response()
        return await handler(request)

    return guarded


@keyed
async def models(request: HTTPRequest) -> Response:
    routers = state_of(request).routers
    now = int(time.time())
    data: list[dict[str, Any]] = [{"id": ROUTER_MODEL, "object": "model", "created": now, "owned_by": "llmrouter"}]
    data += [{"id": f"{ROUTER_MODEL}:{n}", "object": "model", "created": now, "owned_by": "llmrouter"}
             for n in routers]
    seen = set()
    for r in routers.values():
        for name, t in r.config.targets.items():
            if name not in seen:
                seen.add(name)
                data.append({"id": name, "object": "model", "created": now, "owned_by": t.provider,
                             "model": t.model, "vision": t.vision, "context_window": t.context_window})
    return JSONResponse({"object": "list", "data": data})


async def healthz(request: HTTPRequest) -> JSONResponse:
    state = state_of(request)
    targets = {n: b.state for n, b in state.breakers().items()}
    return JSONResponse({"status": "ok", "tables": sorted(state.routers), "targets": targets})


@keyed
async def prometheus(request: HTTPRequest) -> Response:
    state = state_of(request)
    if not may_read(state.caller(request)):
        return HTTPError(403, "this key may only call completions (role call): it may not read /metrics",
                         kind="permission_error", code="not_allowed").response()
    return PlainTextResponse(state.metrics.render(state.breakers(), state.hedges()),
                             media_type="text/plain; version=0.0.4")


@keyed
async def feedback(request: HTTPRequest) -> Response:
    """POST /v1/feedback {"id": "<chat completion id>", "score": 0..1 (or true/false)}."""
    raw = await request.body()
    if len(raw) > 64 * 1024:
        return HTTPError(413, "feedback body is larger than 64 KiB", code="body_too_large").response()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return HTTPError(400, "feedback body is not valid JSON", code="invalid_json").response()
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        return HTTPError(400, "feedback needs {\"id\": \"<response id>\", \"score\": 0..1}",
                         code="invalid_request").response()
    score = data.get("score")
    if isinstance(score, bool):
        score = 1.0 if score else 0.0
    if not isinstance(score, (int, float)) or not 0 <= score <= 1:
        return HTTPError(400, "score must be a number from 0 (bad) to 1 (good), or true/false",
                         code="invalid_request").response()
    state = state_of(request)
    if not may_write(state.caller(request)):
        return HTTPError(403, "this key is read-only: it may not send feedback", kind="permission_error",
                         code="not_allowed").response()
    hit = state.metrics.feedback(data["id"], float(score))
    if hit is None:
        return HTTPError(404, f"no answer with id {data['id'][:80]!r} (unknown, or too old)",
                         code="unknown_response").response()
    route, target, surface = hit
    state.recorder.store.feedback(route, target, surface, float(score))
    log.info("feedback", id=data["id"][:80], score=float(score), route=route, target=target, surface=surface)
    return JSONResponse({"ok": True, "route": route, "target": target}, status_code=202)


async def not_found(request: HTTPRequest, exc: Exception) -> JSONResponse:
    return HTTPError(404, f"no such endpoint: {request.method} {request.url.path}", code="not_found").response()


async def not_allowed(request: HTTPRequest, exc: Exception) -> JSONResponse:
    message = f"{request.method} is not allowed on {request.url.path}"
    return HTTPError(405, message, code="method_not_allowed").response()
