"""An OpenAI-compatible server: point any OpenAI client at it and every request is routed.

    POST /v1/chat/completions   model="router" (or "router:<table>") routes; a target's name
                                or model id calls that target directly; stream or not
    GET  /v1/models             the router, its tables and every concrete target
    GET  /healthz               liveness, and each target's circuit state
    GET  /metrics               Prometheus text (per route, target and surface too: metrics.py)
    POST /v1/feedback           {"id": "<chat completion id>", "score": 0..1}: rate an answer

Routing metadata travels in `x-llmrouter-*` response headers (route, source, confidence, target,
attempts, fallbacks); a request may shorten its deadline with `x-llmrouter-deadline: SECONDS`.
Bad input gets an OpenAI-style
error (`{"error": {"message", "type", "code"}}`) with a 4xx, never a 500. Everything lives in
the app built by `create_app`: no module globals.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request as HTTPRequest
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from llmrouter.completion import (
    ROUTER_MODEL,
    Completion,
    CompletionStream,
    UnknownModel,
    acomplete,
    chain_for,
    open_stream,
)
from llmrouter.errors import LLMRouterError, PolicyRejected, ProviderError, ProviderTimeout, RequestError
from llmrouter.metrics import RouteMetrics
from llmrouter.policy import answers
from llmrouter.policy.rules import http_metadata
from llmrouter.fallback import Attempt, FallbackPolicy, safe_log, summarize_attempts
from llmrouter.providers import ContextTooLong
from llmrouter.types import Request, _first_error

MAX_BODY_BYTES = 4 * 1024 * 1024
# Keys that would let a request choose where or how llmrouter connects: refused, not ignored,
# so a client that expected them to work learns at once that they do not.
REFUSED_KEYS = ("base_url", "api_base", "api_key", "endpoint", "url", "headers", "extra_headers", "organization")
_CIRCUIT = {"closed": 0, "half_open": 1, "open": 2}


class ChatBody(BaseModel):
    """The parts of a chat completion body llmrouter checks; other OpenAI fields pass through."""

    model_config = ConfigDict(extra="allow", strict=True)
    model: str = ROUTER_MODEL
    messages: list[Any]
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=1)
    stop: str | list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    stream_options: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None


class HTTPError(Exception):
    """An error response in OpenAI's shape."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", code: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.headers = status, message, kind, code, dict(headers or {})

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "param": None, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)

    def event(self) -> bytes:
        body = {"error": {"message": self.message, "type": self.kind, "code": self.code}}
        return b"data: " + json.dumps(body).encode() + b"\n\n"


def http_error(exc: Exception) -> HTTPError:
    """The HTTP error a client sees for an llmrouter exception."""
    msg = str(exc).split("\n  hint:")[0]
    if isinstance(exc, HTTPError):
        return exc
    if isinstance(exc, UnknownModel):
        return HTTPError(404, msg, code="model_not_found")
    if isinstance(exc, PolicyRejected):  # a cap: 429 with Retry-After (queue) or 403 (reject)
        headers = {"retry-after": str(math.ceil(exc.retry_after))} if exc.retry_after else {}
        kind = "rate_limit_error" if exc.status == 429 else "permission_error"
        return HTTPError(exc.status, msg, kind, exc.code, headers)
    if isinstance(exc, RequestError):
        return HTTPError(400, msg, code="invalid_request")
    if isinstance(exc, ContextTooLong):
        return HTTPError(400, msg, code="context_length_exceeded")
    if isinstance(exc, ProviderError) and exc.status in (400, 422):
        return HTTPError(400, msg, code="rejected_by_target")
    if isinstance(exc, ProviderTimeout):
        return HTTPError(504, msg, "timeout", "deadline_exceeded")
    if isinstance(exc, ProviderError):
        headers = {"retry-after": str(math.ceil(exc.retry_after))} if exc.retry_after else {}
        return HTTPError(503, msg, "service_unavailable", "all_targets_failed", headers)
    if isinstance(exc, LLMRouterError):
        return HTTPError(500, msg, "server_error", "router_error")
    return HTTPError(500, "internal error in llmrouter; see the server log", "server_error", "internal_error")


class Metrics:
    """Counters and histograms, rendered as Prometheus text."""

    BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

    def __init__(self) -> None:
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self.hist: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}
        self.in_flight = 0
        self.routes = RouteMetrics()  # the per-route view (llmrouter/metrics.py)

    def inc(self, name: str, **labels: str) -> None:
        self.counters[(name, tuple(sorted(labels.items())))] += 1

    def observe(self, name: str, seconds: float, **labels: str) -> None:
        h = self.hist.setdefault((name, tuple(sorted(labels.items()))), [0.0] * (len(self.BUCKETS) + 2))
        for i, b in enumerate(self.BUCKETS):
            if seconds <= b:
                h[i] += 1
        h[-2] += seconds
        h[-1] += 1

    def attempt(self, a: Attempt) -> None:
        self.inc("llmrouter_attempts_total", target=a.target, outcome=a.outcome)

    def render(self, breakers: Mapping[str, Any]) -> str:
        out = ["# TYPE llmrouter_in_flight gauge", f"llmrouter_in_flight {self.in_flight}",
               "# TYPE llmrouter_circuit_state gauge"]
        out += [f'llmrouter_circuit_state{{target="{n}"}} {_CIRCUIT[b.state]}' for n, b in sorted(breakers.items())]
        for name in sorted({k[0] for k in self.counters}):
            out.append(f"# TYPE {name} counter")
            out += [f"{name}{_labels(lab)} {v:g}" for (n, lab), v in sorted(self.counters.items()) if n == name]
        for name in sorted({k[0] for k in self.hist}):
            out.append(f"# TYPE {name} histogram")
            for (n, lab), h in sorted(self.hist.items()):
                if n != name:
                    continue
                for b, c in zip(self.BUCKETS, h):
                    out.append(f"{name}_bucket{_labels(lab + (('le', f'{b:g}'),))} {c:g}")
                out.append(f"{name}_bucket{_labels(lab + (('le', '+Inf'),))} {h[-1]:g}")
                out += [f"{name}_sum{_labels(lab)} {h[-2]:.6f}", f"{name}_count{_labels(lab)} {h[-1]:g}"]
        return "\n".join(out) + "\n"


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    esc = lambda v: str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")  # noqa: E731
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in pairs) + "}"


def _header(value: Any) -> str:
    # Header values must be printable ASCII; reasons quote providers, so clean and bound them.
    text = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in str(value))
    return text[:512]


def table_name(router: Any) -> str:
    """The name `router:<name>` selects: the config file's stem, or "default"."""
    path = getattr(router.config, "path", "")
    return Path(path).stem if path else "default"


def create_app(router: Any, *, tables: Mapping[str, Any] | None = None, policy: FallbackPolicy | None = None,
               max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    """The server for `router` (and more route tables in `tables`, reachable as router:<name>)."""
    routers = {table_name(router): router, **(tables or {})}
    for r in routers.values():
        chain_for(r, policy)
    metrics = Metrics()
    for r in routers.values():
        chain_for(r).listeners.append(metrics.attempt)
    metrics.routes.surfaces = {s for r in routers.values() for s in r.config.policy.surfaces}
    for r in routers.values():
        if hasattr(getattr(r, "policy", None), "alerter"):
            r.policy.alerter.listeners.append(metrics.routes.alert)
    default_policy = chain_for(router).policy

    def pick(model: str) -> Any:
        if model.startswith(ROUTER_MODEL + ":"):
            name = model.split(":", 1)[1]
            if name not in routers:
                raise UnknownModel(f"unknown route table {name!r}; served: {', '.join(sorted(routers))}")
            return routers[name]
        return router

    async def read_body(request: HTTPRequest) -> ChatBody:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            raise HTTPError(413, f"request body is larger than {max_body_bytes} bytes", code="body_too_large")
        raw = bytearray()
        async for part in request.stream():
            raw += part
            if len(raw) > max_body_bytes:
                raise HTTPError(413, f"request body is larger than {max_body_bytes} bytes", code="body_too_large")
        try:
            data = json.loads(bytes(raw), parse_constant=_no_constant)
        except UnicodeDecodeError:
            raise HTTPError(400, "request body is not UTF-8", code="invalid_json") from None
        except ValueError as exc:
            raise HTTPError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
        if not isinstance(data, dict):
            raise HTTPError(400, "request body must be a JSON object", code="invalid_json")
        refused = [k for k in REFUSED_KEYS if k in data]
        if refused:
            raise HTTPError(400, f"{', '.join(refused)} cannot be set in a request: llmrouter only calls the "
                            "targets in its config, with the keys in its environment", code="unsupported_parameter")
        try:
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise HTTPError(400, f"request contains a lone surrogate ({exc.object[exc.start:exc.end]!a}): "
                            "send valid Unicode text", code="invalid_encoding") from None
        try:
            return ChatBody.model_validate(data)
        except ValidationError as exc:
            raise HTTPError(400, _first_error(exc), code="invalid_request") from None

    def meta_headers(decision: Any, target: str, attempts: list[Attempt] | tuple[Attempt, ...]) -> dict[str, str]:
        h = {"x-llmrouter-target": target,
             "x-llmrouter-attempts": str(sum(1 for a in attempts if a.outcome != "skipped"))}
        if decision is not None:
            h["x-llmrouter-route"] = decision.route
            h["x-llmrouter-source"] = decision.source
            if getattr(decision, "escalated_from", None):
                h["x-llmrouter-escalated-from"] = decision.escalated_from
            if decision.confidence is not None:
                h["x-llmrouter-confidence"] = f"{decision.confidence:.4f}"
        else:
            h["x-llmrouter-source"] = "bypass"
        fallbacks = summarize_attempts(attempts)
        if fallbacks:
            h["x-llmrouter-fallbacks"] = fallbacks
        return {k: _header(v) for k, v in h.items()}

    async def chat(request: HTTPRequest) -> Response:
        t0 = time.perf_counter()
        metrics.in_flight += 1
        route, status, req = "", 200, None
        try:
            body = await read_body(request)
            params = body.model_dump(exclude={"model", "messages", "stream", "metadata", "n"}, exclude_none=True)
            params.update({k: v for k, v in (body.model_extra or {}).items()})
            try:
                req = Request.of({"messages": body.messages,
                                  "metadata": http_metadata(request.headers, body.metadata, body.tools)})
            except RequestError as exc:
                raise HTTPError(400, str(exc).split("\n  hint:")[0], code="invalid_request") from None
            deadline = _deadline(request, default_policy.deadline_s)
            target_router = pick(body.model)
            if body.stream:
                stream = await open_stream(target_router, req, model=body.model, deadline_s=deadline, **params)
                route = stream.route
                metrics.routes.decision(stream.decision, req)
                return StreamingResponse(
                    _sse(stream, body, metrics, t0, req, target_router), media_type="text/event-stream",
                    headers={**meta_headers(stream.decision, stream.target, stream.attempts),
                             "cache-control": "no-cache"})
            done = await acomplete(target_router, req, model=body.model, deadline_s=deadline, **params)
            route = done.route or ""
            metrics.inc("llmrouter_requests_total", route=route, target=done.target, outcome="ok")
            data = _completion_json(done)
            metrics.routes.decision(done.decision, req)
            metrics.routes.answer(done, req, data["id"], answers.cost_usd(
                target_router, done.target, done.usage.prompt_tokens, done.usage.completion_tokens))
            return JSONResponse(data, headers=meta_headers(done.decision, done.target, done.attempts))
        except Exception as exc:
            err = http_error(exc)
            status = err.status
            if err.status >= 500 and not isinstance(exc, ProviderError):
                safe_log("exception", "server_error", error=str(exc))
            metrics.inc("llmrouter_requests_total", route=route, target="", outcome=f"http_{err.status}")
            metrics.routes.error(route, req, err.status)
            return err.response()
        finally:
            metrics.in_flight -= 1
            # for a stream, the time to its first token; else to the whole answer
            metrics.observe("llmrouter_response_start_seconds", time.perf_counter() - t0, status=str(status))

    async def models(request: HTTPRequest) -> JSONResponse:
        now = int(time.time())
        data = [{"id": ROUTER_MODEL, "object": "model", "created": now, "owned_by": "llmrouter"}]
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
        targets = {n: b.state for r in routers.values() for n, b in chain_for(r).breakers.items()}
        return JSONResponse({"status": "ok", "tables": sorted(routers), "targets": targets})

    async def prometheus(request: HTTPRequest) -> PlainTextResponse:
        breakers = {n: b for r in routers.values() for n, b in chain_for(r).breakers.items()}
        return PlainTextResponse(metrics.render(breakers) + metrics.routes.render(), media_type="text/plain; version=0.0.4")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        for r in routers.values():  # the server's event loop ends: close its connections
            await chain_for(r).aclose()

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", prometheus, methods=["GET"]),
            Route("/v1/feedback", metrics.routes.feedback_endpoint, methods=["POST"]),
        ],
        exception_handlers={404: _not_found, 405: _not_allowed},
        lifespan=lifespan,
    )


def _no_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON does not, and no target would either.
    raise ValueError(f"{name} is not valid JSON")


def _deadline(request: HTTPRequest, cap: float) -> float:
    """The request's deadline: x-llmrouter-deadline (seconds), never above the server's."""
    raw = request.headers.get("x-llmrouter-deadline")
    if raw is None:
        return cap
    try:
        value = float(raw)
    except ValueError:
        raise HTTPError(400, "x-llmrouter-deadline must be a number of seconds", code="invalid_header") from None
    if not (value > 0 and math.isfinite(value)):
        raise HTTPError(400, "x-llmrouter-deadline must be a positive number of seconds", code="invalid_header")
    return min(value, cap)


async def _not_found(request: HTTPRequest, exc: Exception) -> JSONResponse:
    return HTTPError(404, f"no such endpoint: {request.method} {request.url.path}", code="not_found").response()


async def _not_allowed(request: HTTPRequest, exc: Exception) -> JSONResponse:
    message = f"{request.method} is not allowed on {request.url.path}"
    return HTTPError(405, message, code="method_not_allowed").response()


def _completion_json(done: Completion) -> dict[str, Any]:
    content = done.text if (done.text or not done.tool_calls) else None  # OpenAI: null beside tool calls
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if done.tool_calls:
        message["tool_calls"] = list(done.tool_calls)
    u = done.usage
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
        "model": done.model,
        "choices": [{"index": 0, "message": message, "finish_reason": done.finish_reason or "stop"}],
        "usage": {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                  "total_tokens": u.total_tokens},
        "llmrouter": {"route": done.route, "target": done.target,
                      "attempts": [a.model_dump(exclude_defaults=True) for a in done.attempts]},
    }


async def _sse(stream: CompletionStream, body: ChatBody, metrics: Metrics, t0: float, req: Any = None,
               router: Any = None) -> AsyncIterator[bytes]:
    """The SSE body: chunks as they come, then [DONE]; an error event (no [DONE]) if the target
    fails after the answer started, so a client never takes a truncated answer for a whole one."""
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": stream.model}
    sent_role = False
    outcome = "ok"
    try:
        async for chunk in stream:
            if not chunk.delta and not chunk.finish_reason:
                continue  # usage-only or empty chunks: usage is sent once, at the end
            delta = dict(chunk.delta)
            if not sent_role:
                delta = {"role": "assistant", **delta}
                sent_role = True
            data = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": chunk.finish_reason}]}
            yield b"data: " + json.dumps(data).encode() + b"\n\n"
        if (body.stream_options or {}).get("include_usage") and stream.completion is not None:
            u = stream.completion.usage
            usage = {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                     "total_tokens": u.total_tokens}
            yield b"data: " + json.dumps({**base, "choices": [], "usage": usage}).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"
    except ProviderError as exc:
        outcome = "cut"
        yield HTTPError(502, str(exc).split("\n  hint:")[0], "provider_error", "stream_interrupted").event()
    except Exception as exc:  # a bug of ours: the client must still learn the answer is incomplete
        outcome = "error"
        safe_log("exception", "stream_error", error=str(exc))
        yield http_error(exc).event()
    finally:
        await stream.aclose()
        metrics.inc("llmrouter_requests_total", route=stream.route, target=stream.target, outcome=outcome)
        if stream.completion is not None and router is not None:
            u = stream.completion.usage
            metrics.routes.answer(stream.completion, req, base["id"], answers.cost_usd(
                router, stream.completion.target, u.prompt_tokens, u.completion_tokens))
        metrics.observe("llmrouter_stream_seconds", time.perf_counter() - t0)
