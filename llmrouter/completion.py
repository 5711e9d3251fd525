"""Route a request and get the answer: `complete`, `acomplete` and `astream` join the router's
Decision to the FallbackChain over the chosen route's targets.

Deciding is synchronous (llama.cpp blocks, and a Llama is not thread-safe), so it runs in a
worker thread, one decision at a time per router; calling targets is async. This module is the
one place where the two meet.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
from pydantic import BaseModel, ConfigDict, Field

from llmrouter.errors import ProviderError, RequestError
from llmrouter.fallback import Attempt, ChainStream, FallbackChain, FallbackPolicy
from llmrouter.policy import answers
from llmrouter.providers import StreamChunk
from llmrouter.types import Decision, Request

T = TypeVar("T")
ROUTER_MODEL = "router"
# OpenAI chat parameters a target receives. Everything else in a body is dropped, so nothing a
# client sends can change where or how llmrouter connects (no base_url, headers or keys).
FORWARDED = frozenset({
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "tools", "tool_choice",
    "parallel_tool_calls", "response_format", "presence_penalty", "frequency_penalty", "logit_bias",
    "logprobs", "top_logprobs", "user", "stream_options", "reasoning_effort",
})


class UnknownModel(RequestError):
    """The `model` of a request is neither the router nor a configured target."""

    hint = "use model='router', or one of the names GET /v1/models lists"


class Usage(BaseModel):
    model_config = ConfigDict(frozen=True)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Completion(BaseModel):
    """An answer and how it was reached: the route, the target that answered, every attempt."""

    model_config = ConfigDict(frozen=True)
    text: str
    target: str
    model: str
    route: str | None = None
    decision: Decision | None = None
    attempts: tuple[Attempt, ...] = ()
    usage: Usage = Field(default_factory=Usage)
    finish_reason: str | None = None
    tool_calls: tuple[dict[str, Any], ...] = ()
    latency_ms: float = 0.0


@dataclass
class _Runtime:
    """What a router needs to call targets: its chain, and one-at-a-time deciding."""

    chain: FallbackChain
    decide_lock: threading.Lock = field(default_factory=threading.Lock)
    gates: weakref.WeakKeyDictionary[Any, asyncio.Semaphore] = field(default_factory=weakref.WeakKeyDictionary)
    waiting: int = 0


_RUNTIMES: weakref.WeakKeyDictionary[Any, _Runtime] = weakref.WeakKeyDictionary()


def chain_for(router: Any, policy: FallbackPolicy | None = None) -> FallbackChain:
    """The router's FallbackChain (its breakers are shared by every request); a new policy replaces
    it. Without one, the route table's `[fallback]` settings make the first."""
    rt = _RUNTIMES.get(router)
    if rt is None and policy is None:
        policy = router.config.fallback.policy()
    if rt is None or (policy is not None and policy != rt.chain.policy):
        rt = _RUNTIMES[router] = _Runtime(FallbackChain(router.config.targets, policy))
    return rt.chain


async def adecide(router: Any, request: Request) -> Decision:
    """router.decide(request) in a worker thread, one at a time, without blocking the event loop.

    When the policy's `decide_wait_s` passes before the model is free, the request takes the
    default route (source "default", reason says why) rather than queueing without bound.
    """
    chain = chain_for(router)
    rt = _RUNTIMES[router]
    loop = asyncio.get_running_loop()
    if loop not in rt.gates:
        rt.gates[loop] = asyncio.Semaphore(1)  # one thread waits on the model, not one per request
    gate = rt.gates[loop]
    rt.waiting += 1
    try:
        async with asyncio.timeout(chain.policy.decide_wait_s):
            await gate.acquire()
    except TimeoutError:
        return _busy_decision(router, rt.waiting, chain.policy.decide_wait_s or 0.0)
    finally:
        rt.waiting -= 1

    def run() -> Decision:
        with rt.decide_lock:  # also guards callers on other event loops and threads
            return router.decide(request)

    try:
        return await anyio.to_thread.run_sync(run)
    finally:
        gate.release()


def _busy_decision(router: Any, waiting: int, waited: float) -> Decision:
    reason = f"router model busy: waited {waited:.1f}s with {waiting} request(s) queued"
    make = getattr(router, "default_decision", None)
    if make is not None:
        return make(reason)
    return Decision(route=router.config.table.default_route, source="default", reason=reason)


def targets_for_model(router: Any, model: str | None) -> list[str] | None:
    """None when `model` asks for routing; else the targets it names (a target name or model id)."""
    if model is None or model == ROUTER_MODEL or model.startswith(ROUTER_MODEL + ":"):
        return None
    targets = router.config.targets
    if model in targets:
        return [model]
    named = [n for n, t in targets.items() if t.model == model]
    if named:
        return named
    raise UnknownModel(f"unknown model {model!r}: use 'router' or one of: {', '.join(sorted(targets))}")


def route_targets(router: Any, route: str) -> list[str]:
    """A route's targets in order; a route without targets borrows the default route's."""
    table = router.config.table
    return list(table[route].targets) or list(table[table.default_route].targets)


def build_body(request: Request, params: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI-style body targets receive: the messages exactly as sent, plus chat parameters."""
    body = {k: v for k, v in params.items() if k in FORWARDED and v is not None}
    body["messages"] = [m.model_dump(mode="json", exclude_unset=True) for m in request.messages]
    return body


async def _plan(router: Any, request: Request, model: str | None) -> tuple[Decision | None, list[str], str]:
    names = targets_for_model(router, model)
    if names is not None:
        return None, names, f"model:{model}"
    decision = await adecide(router, request)
    return decision, route_targets(router, decision.route), decision.route


async def acomplete(router: Any, request: Any, *, model: str | None = None, deadline_s: float | None = None,
                    **params: Any) -> Completion:
    """Route `request` and return the first answer a target of its route gives."""
    t0 = time.perf_counter()
    request = Request.of(request)
    decision, names, label = await _plan(router, request, model)
    chain = chain_for(router)
    body = build_body(request, params)
    try:
        response, target, attempts = await chain.complete(
            names, body, has_image=request.has_image, deadline_s=deadline_s, label=label)
    except ProviderError:
        answers.failed(router, request)
        raise
    better = answers.reconsider(router, request, decision, response.text)
    if better is not None:  # the target said it was unsure: the next tier answers, once
        left = None if deadline_s is None else max(0.001, deadline_s - (time.perf_counter() - t0))
        try:
            response, target, more = await chain.complete(
                route_targets(router, better.route), body, has_image=request.has_image, deadline_s=left,
                label=better.route)
            decision, attempts = better, [*attempts, *more]
        except ProviderError:
            pass  # the first answer stands
    done = Completion(
        text=response.text, target=target, model=chain.targets[target].model,
        route=decision.route if decision else None, decision=decision, attempts=tuple(attempts),
        usage=Usage(**response.usage), finish_reason=response.finish_reason,
        tool_calls=response.tool_calls, latency_ms=(time.perf_counter() - t0) * 1000,
    )
    answers.settle(router, request, done)
    return done


def complete(router: Any, request: Any, **kw: Any) -> Completion:
    """The blocking form of `acomplete`, for scripts and notebooks."""
    async def main() -> Completion:
        try:
            return await acomplete(router, request, **kw)
        finally:
            await chain_for(router).aclose()

    return run_sync(main)


class CompletionStream:
    """A routed, streamed answer: `await start()`, then `async for chunk in stream`.

    After `start()` the decision, target and attempts are known (the server sends them as
    headers); after the last chunk, `completion` holds the whole answer.
    """

    def __init__(self, decision: Decision | None, label: str, inner: ChainStream, model_of: Callable[[str], str]):
        self.decision, self.route, self._inner, self._model_of = decision, label, inner, model_of
        self._t0 = time.perf_counter()
        self._text: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self._finish: str | None = None
        self._usage: dict[str, int] = {}
        self.completion: Completion | None = None
        self.on_done: Callable[[Completion], None] | None = None  # spend accounting, the completion event

    @property
    def target(self) -> str:
        return self._inner.target or ""

    @property
    def model(self) -> str:
        """The model id of the target that answers."""
        return self._model_of(self.target)

    @property
    def attempts(self) -> list[Attempt]:
        return self._inner.attempts

    async def start(self) -> CompletionStream:
        await self._inner.start()
        return self

    def __aiter__(self) -> CompletionStream:
        return self

    async def __anext__(self) -> StreamChunk:
        try:
            chunk = await self._inner.__anext__()
        except StopAsyncIteration:
            self.completion = Completion(
                text="".join(self._text), target=self.target, model=self._model_of(self.target),
                route=self.decision.route if self.decision else None, decision=self.decision,
                attempts=tuple(self.attempts), usage=Usage(**self._usage), finish_reason=self._finish,
                tool_calls=tuple(self._calls[i] for i in sorted(self._calls)),
                latency_ms=(time.perf_counter() - self._t0) * 1000,
            )
            if self.on_done is not None:
                self.on_done(self.completion)
            raise
        self._text.append(chunk.delta.get("content") or "")
        for call in chunk.delta.get("tool_calls") or ():
            _merge_call(self._calls.setdefault(call.get("index", 0), {}), call)
        self._finish = chunk.finish_reason or self._finish
        self._usage = chunk.usage or self._usage
        return chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def _merge_call(into: dict[str, Any], delta: dict[str, Any]) -> None:
    for key in ("id", "type"):
        if delta.get(key):
            into[key] = delta[key]
    fn = into.setdefault("function", {"name": "", "arguments": ""})
    d = delta.get("function") or {}
    fn["name"] = fn.get("name") or d.get("name") or ""
    fn["arguments"] = fn.get("arguments", "") + (d.get("arguments") or "")


async def open_stream(router: Any, request: Any, *, model: str | None = None, deadline_s: float | None = None,
                      **params: Any) -> CompletionStream:
    """Route `request` and start streaming; raises before any chunk if no target could start."""
    request = Request.of(request)
    decision, names, label = await _plan(router, request, model)
    chain = chain_for(router)
    inner = chain.stream(names, build_body(request, params), has_image=request.has_image,
                         deadline_s=deadline_s, label=label)
    stream = CompletionStream(decision, label, inner, lambda t: chain.targets[t].model if t else "")
    stream.on_done = lambda done: answers.settle(router, request, done)
    try:
        return await stream.start()
    except ProviderError:
        answers.failed(router, request)
        raise


async def astream(router: Any, request: Any, **kw: Any) -> AsyncIterator[StreamChunk]:
    """Route `request` and yield its answer's chunks as they arrive."""
    stream = await open_stream(router, request, **kw)
    try:
        async for chunk in stream:
            yield chunk
    finally:
        await stream.aclose()


def run_sync(main: Callable[[], Any]) -> Any:
    """Run a coroutine function to completion, also from a thread that already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    box: dict[str, Any] = {}

    def worker() -> None:
        try:
            box["value"] = asyncio.run(main())
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=worker, daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
