"""A GGUF model answering in-process through llama-cpp-python, so routing and answering can both
run on a laptop with no server and no key.

The Llama is built on first use, once per target, with one thread; a lock serializes requests
because a Llama is not thread-safe. Generation runs in a worker thread and checks a stop flag
between tokens, so a deadline or a client that went away stops it within one token.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from llmrouter.config import Target
from llmrouter.errors import ContextTooLong, LLMRouterError, ProviderError
from llmrouter.providers.base import ProviderResponse, StreamChunk

DEFAULT_MAX_TOKENS = 512
_PARAMS = ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty")


def load_llama(target: Target) -> Any:
    """A quiet llama_cpp.Llama for `target.model` (a manifest name or a .gguf path), one thread."""
    from llmrouter.llamacpp.load import load_llama as load
    from llmrouter.models import resolve

    return load(resolve(target.model), n_ctx=target.context_window)  # errors: see _error


class LocalProvider:
    """Answers with a local GGUF model; `loader` builds the model (tests pass a fake)."""

    def __init__(self, target: Target, client: object = None, *, loader: Callable[[Target], Any] = load_llama) -> None:
        self.target = target
        self._loader = loader
        self._llama: Any = None
        self._lock = threading.Lock()

    async def complete(self, body: dict[str, Any]) -> ProviderResponse:
        text: list[str] = []
        calls: list[dict[str, Any]] = []
        finish: str | None = None
        usage: dict[str, int] = {}
        async for chunk in self.stream(body):
            text.append(chunk.delta.get("content") or "")
            calls.extend(chunk.delta.get("tool_calls") or ())
            finish = chunk.finish_reason or finish
            usage = chunk.usage or usage
        return ProviderResponse(text="".join(text), finish_reason=finish, tool_calls=tuple(calls),
                                usage=usage, model=self.target.model)

    async def stream(self, body: dict[str, Any]) -> AsyncIterator[StreamChunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def emit(kind: str, item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, item))
            except RuntimeError:  # the loop is gone: nobody is listening any more
                stop.set()

        def work() -> None:
            try:
                for raw in self._generate(body, stop):
                    emit("chunk", raw)
            except BaseException as exc:  # handed to the async side, which raises it there
                emit("error", exc)
            else:
                emit("end", None)

        worker = threading.Thread(target=work, name=f"llmrouter-local-{self.target.name}", daemon=True)
        worker.start()
        try:
            while True:
                kind, item = await queue.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise self._error(item)
                choice = (item.get("choices") or [{}])[0]
                yield StreamChunk(delta=dict(choice.get("delta") or {}), finish_reason=choice.get("finish_reason"),
                                  usage=item.get("usage"))
        finally:
            stop.set()  # the worker stops at its next token and releases the model

    def _generate(self, body: dict[str, Any], stop: threading.Event) -> Iterator[dict[str, Any]]:
        with self._lock:
            if stop.is_set():
                return
            if self._llama is None:
                self._llama = self._loader(self.target)
            params = {k: body[k] for k in _PARAMS if body.get(k) is not None}
            max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
            for raw in self._llama.create_chat_completion(
                messages=_plain_messages(body.get("messages", [])), stream=True, max_tokens=max_tokens, **params
            ):
                if stop.is_set():
                    return
                yield raw

    def _error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, ProviderError):
            return exc
        name = self.target.name
        if isinstance(exc, LLMRouterError):
            return ProviderError(f"{name}: {exc.message}", target=name, status=503, hint=exc.hint)
        if isinstance(exc, ValueError) and "context window" in str(exc):
            return ContextTooLong(f"{name}: {exc}", status=400, target=name)
        return ProviderError(f"{name}: local model failed: {type(exc).__name__}: {exc}", target=name)


def _plain_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    # Chat templates inside GGUF files expect plain-text content: join text parts, drop the rest.
    out = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
        role = m.get("role", "user")
        out.append({"role": role if role in ("system", "user", "assistant") else "user", "content": content or ""})
    return out
