"""Answering a decided request: the plan's targets are called through the FallbackChain, and the
policy hears about the answer (a target's own "not sure", spend, a failed route).

The Router makes the Plan (deciding is its job) and owns one Answerer; nothing here calls back up
into the Router.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from llmrouter.config import Config
from llmrouter.errors import ProviderError
from llmrouter.fallback import ChainStream, FallbackChain
from llmrouter.policy import Policy
from llmrouter.providers import StreamChunk
from llmrouter.types import Attempt, Completion, Decision, Request, Segment, Usage

log = structlog.get_logger("llmrouter")

# OpenAI chat parameters a target receives. Everything else in a body is dropped, so nothing a
# client sends can change where or how llmrouter connects (no base_url, headers or keys).
FORWARDED = frozenset({
    "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "tools", "tool_choice",
    "parallel_tool_calls", "response_format", "presence_penalty", "frequency_penalty", "logit_bias",
    "logprobs", "top_logprobs", "user", "stream_options", "reasoning_effort",
})


@dataclass(frozen=True)
class Plan:
    """A request ready to be answered: its decision (None when the client named a target), the
    targets to try in order, and the label attempts are logged under (the route, or model:<name>)."""

    request: Request
    decision: Decision | None
    targets: tuple[str, ...]
    label: str


def build_body(request: Request, params: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI-style body targets receive: the messages exactly as sent, plus chat parameters."""
    body = {k: v for k, v in params.items() if k in FORWARDED and v is not None}
    body["messages"] = [m.model_dump(mode="json", exclude_unset=True) for m in request.messages]
    return body


class Answerer:
    """Answers plans through a FallbackChain and tells the policy what came of each answer."""

    def __init__(self, config: Config, chain: FallbackChain, policy: Policy) -> None:
        self.config, self.chain, self.policy = config, chain, policy

    def model_of(self, target: str) -> str:
        """The model id of a target (what an OpenAI client is told answered)."""
        return self.chain.targets[target].model if target else ""

    async def complete(self, plan: Plan, params: dict[str, Any], deadline_s: float | None = None) -> Completion:
        """The first answer a target of the plan gives; one tier up, once, if it says it is unsure."""
        t0 = time.perf_counter()
        request, decision = plan.request, plan.decision
        body = build_body(request, params)
        try:
            response, target, attempts = await self.chain.complete(
                plan.targets, body, has_image=request.has_image, deadline_s=deadline_s, label=plan.label)
        except ProviderError:
            self.policy.failed(request)
            raise
        better = self.policy.reconsider(request, decision, response.text) if decision is not None else None
        if better is not None:  # the target said it was unsure: the next tier answers, once
            left = None if deadline_s is None else max(0.001, deadline_s - (time.perf_counter() - t0))
            try:
                response, target, more = await self.chain.complete(
                    self.config.table.targets_of(better.route), body, has_image=request.has_image,
                    deadline_s=left, label=better.route)
                decision, attempts = better, [*attempts, *more]
            except ProviderError:
                pass  # the first answer stands
        done = Completion(
            text=response.text, target=target, model=self.model_of(target),
            route=decision.route if decision else None, decision=decision, attempts=tuple(attempts),
            usage=Usage(**response.usage), finish_reason=response.finish_reason,
            tool_calls=response.tool_calls, latency_ms=(time.perf_counter() - t0) * 1000,
        )
        return self.settle(request, done)

    async def stream(self, plan: Plan, params: dict[str, Any], deadline_s: float | None = None) -> CompletionStream:
        """A started stream of the plan's answer; raises before any chunk if no target could start."""
        inner = ChainStream(self.chain, plan.targets, build_body(plan.request, params),
                            has_image=plan.request.has_image, deadline_s=deadline_s, label=plan.label)
        stream = CompletionStream(plan.decision, plan.label, inner, self.model_of)
        stream.on_done = lambda done: self.settle(plan.request, done)
        try:
            return await stream.start()
        except ProviderError:
            self.policy.failed(plan.request)
            raise

    def settle(self, request: Request, done: Completion) -> Completion:
        """Charge the answer to its caller (spend caps), log the `completion` event, and return the
        completion with its cost."""
        u = done.usage
        shares = done.segments or (Segment(target=done.target, usage=u),)  # each target bills its share
        cost = sum(self.policy.settle(request, self.chain.targets[s.target], s.usage.prompt_tokens,
                                      s.usage.completion_tokens) for s in shares)
        meta = request.metadata
        log.info("completion", route=done.route, target=done.target,
                 surface=str(meta.get("surface") or "") or None, tier=str(meta.get("tier") or "") or None,
                 tenant=str(meta.get("tenant") or "") or None,
                 prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens, cost_usd=round(cost, 8),
                 latency_ms=round(done.latency_ms, 1), fallbacks=sum(1 for a in done.attempts if a.outcome == "failed"),
                 escalated_from=done.decision.escalated_from if done.decision else None,
                 continued_by=done.continued_by)
        return done.model_copy(update={"cost_usd": cost})


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
        self.on_done: Callable[[Completion], Completion] | None = None  # spend accounting, the completion event

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

    @property
    def continued_by(self) -> list[str]:
        """The targets that continued the answer after a cut, in order (usually none)."""
        return self._inner.continued_by

    async def start(self) -> CompletionStream:
        await self._inner.start()
        return self

    def __aiter__(self) -> CompletionStream:
        return self

    async def __anext__(self) -> StreamChunk:
        try:
            chunk = await self._inner.__anext__()
        except StopAsyncIteration:
            segments = tuple(self._inner.segments)  # a continued answer: usage summed over its targets
            usage = Usage(prompt_tokens=sum(s.usage.prompt_tokens for s in segments),
                          completion_tokens=sum(s.usage.completion_tokens for s in segments)) if segments else (
                Usage(**self._usage))
            self.completion = Completion(
                text="".join(self._text), target=self.target, model=self._model_of(self.target),
                route=self.decision.route if self.decision else None, decision=self.decision,
                attempts=tuple(self.attempts), usage=usage, finish_reason=self._finish,
                tool_calls=tuple(self._calls[i] for i in sorted(self._calls)),
                latency_ms=(time.perf_counter() - self._t0) * 1000, segments=segments,
            )
            if self.on_done is not None:
                self.completion = self.on_done(self.completion)
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
