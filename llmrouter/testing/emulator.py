"""A fake LLM provider on a real socket, for tests, demos and benchmarks: OpenAI- and
Anthropic-shaped, and scriptable to fail the ways real providers fail.

One emulator serves many named fake targets: `{url}/{name}/v1` is an OpenAI-compatible base_url
and `{url}/{name}` an Anthropic one. Each name answers with its default Behavior, or with the
next one-shot Behavior scripted for it: latency, an error status with Retry-After, a connection
reset, accepting and never answering, a stream cut, stalled or ended early after N tokens, a
malformed SSE chunk, no [DONE], another model name, refusing an assistant prefill. A trailing
assistant message is continued: the answer goes on after the prefill when it starts with it. It speaks just enough HTTP/1.1 (keep-alive, chunked streams) to fail at the byte level,
which a web framework would not let it do.

    python -m llmrouter.testing.emulator --port 9000  # demo: every name answers "<name> says: ..."
    POST /_emulator/script {"name": "a", "behaviors": [{"status": 500}], "default": {...}}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import struct
import threading
import time
import uuid
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field, fields
from collections.abc import Iterator
from typing import Any


@dataclass(frozen=True)
class Behavior:
    """How a fake target answers one request."""

    status: int = 200
    latency_s: float = 0.0  # before the response starts
    retry_after: float | None = None  # sent with an error status
    error_code: str | None = None  # e.g. "context_length_exceeded" with status 400
    reset: bool = False  # read the request, then reset the connection (TCP RST)
    hang: bool = False  # read the request, then never answer
    cut_after: int | None = None  # stream: drop the connection after N content tokens
    stall_after: int | None = None  # stream: stop sending, connection open, after N tokens
    malformed_after: int | None = None  # stream: send a chunk that is not JSON after N tokens
    token_delay_s: float = 0.0  # stream: pause between tokens
    end_after: int | None = None  # stream: end the body cleanly after N tokens, no finish_reason nor [DONE]
    no_done: bool = False  # stream: the whole answer and its finish_reason, but no [DONE]
    prefill: bool = True  # continues a trailing assistant message; False: 400 for one
    model: str | None = None  # answer under this model name instead of the one asked for
    text: str | None = None  # the answer; default "<name> says: <last user text>"
    tool_call: dict[str, Any] | None = None  # answer with this tool call: {"name", "arguments"}

    @classmethod
    def of(cls, data: dict[str, Any]) -> Behavior:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown behavior field(s): {', '.join(sorted(unknown))}")
        return cls(**data)


@dataclass
class Seen:
    """A request a fake target received."""

    name: str
    path: str
    headers: dict[str, str]
    body: Any
    at: float = field(default_factory=time.monotonic)


class Emulator:
    """The fake provider server. `start()` runs it in a background thread; `serve()` in a loop."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, default: Behavior | None = None) -> None:
        self.host, self.port = host, port
        self._default = default or Behavior()
        self._defaults: dict[str, Behavior] = {}
        self._scripts: dict[str, deque[Behavior]] = defaultdict(deque)
        self._seen: list[Seen] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._open: set[asyncio.StreamWriter] = set()

    # --- scripting -------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def base_url(self, name: str, api: str = "openai") -> str:
        """The base_url a Target uses to reach fake target `name`."""
        return f"{self.url}/{name}/v1" if api == "openai" else f"{self.url}/{name}"

    def script(self, name: str, *behaviors: Behavior) -> None:
        """Answer the next requests to `name` with these behaviors, one each, then the default."""
        with self._lock:
            self._scripts[name].extend(behaviors)

    def set_default(self, name: str, behavior: Behavior) -> None:
        """How `name` answers once its script is used up."""
        with self._lock:
            self._defaults[name] = behavior

    def reset(self) -> None:
        """Forget scripts, defaults and seen requests."""
        with self._lock:
            self._scripts.clear()
            self._defaults.clear()
            self._seen.clear()

    def seen(self, name: str | None = None) -> list[Seen]:
        """Requests received (by `name`), oldest first."""
        with self._lock:
            return [s for s in self._seen if name is None or s.name == name]

    def _next(self, name: str) -> Behavior:
        with self._lock:
            script = self._scripts.get(name)
            return script.popleft() if script else self._defaults.get(name, self._default)

    # --- running ---------------------------------------------------------------------------
    async def serve(self, on_ready: Any = None) -> None:
        """Listen until cancelled; `on_ready()` is called once the port is open."""
        await self._listen()
        if on_ready is not None:
            on_ready()
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.host, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> Emulator:
        """Serve in a daemon thread; returns once the port is open."""
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._listen())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="llmrouter-emulator", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for w in list(self._open):
                w.transport.abort()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in others:
                t.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread:
            self._thread.join(5)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- HTTP ------------------------------------------------------------------------------
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                keep = await self._handle(*request, reader, writer)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            self._open.discard(writer)
            if not writer.transport.is_closing():
                writer.close()

    async def _handle(self, method: str, path: str, headers: dict[str, str], raw: bytes,
                      reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        keep = headers.get("connection", "").lower() != "close"
        parts = [p for p in path.split("?")[0].split("/") if p]
        if parts[:1] == ["_emulator"]:
            return await self._control(method, parts[1:], raw, writer) and keep
        if path == "/healthz":
            return await _send_json(writer, 200, {"status": "ok"}) and keep
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            return await _send_json(writer, 400, _oai_error("body is not JSON", "invalid_request_error")) and keep
        if parts[:1] == ["v1"]:  # the name comes from the model, like a real multi-model server
            name, api = str(body.get("model") or "default"), parts[1:]
        else:
            name, api = (parts[0] if parts else "default"), parts[1:]
        if api and api[0] == "v1":
            api = api[1:]
        kind = "/".join(api)
        if method == "GET" and kind == "models":
            return await _send_json(writer, 200, {"object": "list", "data": [{"id": name, "object": "model"}]}) and keep
        if method != "POST" or kind not in ("chat/completions", "messages"):
            return await _send_json(writer, 404, _oai_error(f"no route {method} {path}", "not_found")) and keep
        with self._lock:
            self._seen.append(Seen(name, path, headers, body))
        b = self._next(name)
        anthropic = kind == "messages"
        if b.hang:
            await reader.read()  # until the client gives up and closes
            return False
        if b.reset:
            _reset(writer)
            return False
        if b.latency_s:
            await asyncio.sleep(b.latency_s)
        if b.status != 200:
            extra = {"retry-after": f"{b.retry_after:g}"} if b.retry_after is not None else {}
            return await _send_json(writer, b.status, _error_body(b, anthropic), extra) and keep
        text = b.text if b.text is not None else f"{name} says: {_last_user_text(body)}"
        prefill = _prefill_of(body)
        if prefill is not None:
            refused = _refuse_prefill(b, prefill, anthropic)
            if refused:
                return await _send_json(writer, 400, _oai_error(refused, "invalid_request_error")) and keep
            text = text[len(prefill):] if text.startswith(prefill) else text  # a model continuing the prefill
        if b.model:
            body = {**body, "model": b.model}
        if body.get("stream"):
            return await self._stream(writer, name, body, b, text, anthropic) and keep
        answer = _anthropic_message if anthropic else _openai_completion
        return await _send_json(writer, 200, answer(name, body, text, b)) and keep

    async def _stream(self, writer: asyncio.StreamWriter, name: str, body: dict[str, Any], b: Behavior,
                      text: str, anthropic: bool) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        events = _anthropic_events(name, body, text, b) if anthropic else _openai_events(name, body, text, b)
        tokens = 0
        for event, is_token in events:
            if is_token:
                if b.cut_after is not None and tokens >= b.cut_after:
                    await writer.drain()
                    writer.close()  # a FIN mid-body: the client has the tokens, then an incomplete body
                    return False
                if b.stall_after is not None and tokens >= b.stall_after:
                    await writer.drain()
                    await _wait_closed(writer)
                    return False
                if b.end_after is not None and tokens >= b.end_after:
                    break
                if b.malformed_after is not None and tokens >= b.malformed_after:
                    event = b'data: {"choices": [{"delta": {"content": "oops\n\n'
                tokens += 1
                if b.token_delay_s:
                    await asyncio.sleep(b.token_delay_s)
            if b.no_done and event.startswith(b"data: [DONE]"):
                continue
            writer.write(b"%x\r\n%s\r\n" % (len(event), event))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    async def _control(self, method: str, parts: list[str], raw: bytes, writer: asyncio.StreamWriter) -> bool:
        try:
            if method == "POST" and parts == ["script"]:
                data = json.loads(raw)
                self.script(data["name"], *(Behavior.of(x) for x in data.get("behaviors", [])))
                if data.get("default") is not None:
                    self.set_default(data["name"], Behavior.of(data["default"]))
                return await _send_json(writer, 200, {"ok": True})
            if method == "POST" and parts == ["reset"]:
                self.reset()
                return await _send_json(writer, 200, {"ok": True})
            if method == "GET" and parts[:1] == ["seen"]:
                seen = self.seen(parts[1] if len(parts) > 1 else None)
                return await _send_json(writer, 200, [asdict(s) for s in seen])
        except (ValueError, KeyError, TypeError) as exc:
            return await _send_json(writer, 400, _oai_error(f"bad control request: {exc}", "invalid_request_error"))
        return await _send_json(writer, 404, _oai_error("unknown control endpoint", "not_found"))


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], bytes] | None:
    line = await reader.readline()
    if not line:
        return None
    method, path, _version = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        h = await reader.readline()
        if h in (b"\r\n", b"\n", b""):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    length = int(headers.get("content-length") or 0)
    raw = await reader.readexactly(length) if length else b""
    return method, path, headers, raw


async def _send_json(writer: asyncio.StreamWriter, status: int, data: Any, extra: dict[str, str] | None = None) -> bool:
    payload = json.dumps(data).encode()
    head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\ncontent-type: application/json\r\n"
    head += f"content-length: {len(payload)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in (extra or {}).items())
    writer.write(head.encode() + b"\r\n" + payload)
    await writer.drain()
    return True


_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 408: "Request Timeout",
            413: "Payload Too Large", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 529: "Overloaded"}


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:  # SO_LINGER 0: close() sends RST, like a crashed upstream
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _wait_closed(writer: asyncio.StreamWriter) -> None:
    while not writer.transport.is_closing():
        await asyncio.sleep(0.05)


def _last_user_text(body: dict[str, Any]) -> str:
    for m in reversed(body.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):
                c = " ".join(p.get("text", "") for p in c if isinstance(p, dict) and p.get("type") == "text")
            if c:
                return str(c)
    return ""


def _prefill_of(body: dict[str, Any]) -> str | None:
    """The text of a trailing assistant message (OpenAI string or Anthropic blocks), else None."""
    messages = body.get("messages") or []
    last = messages[-1] if messages else None
    if not isinstance(last, dict) or last.get("role") != "assistant":
        return None
    c = last.get("content")
    if isinstance(c, list):
        c = "".join(p.get("text", "") for p in c if isinstance(p, dict) and p.get("type") == "text")
    return str(c or "")


def _refuse_prefill(b: Behavior, prefill: str, anthropic: bool) -> str | None:
    """Why a target refuses a trailing assistant message, like real ones do, or None."""
    if not b.prefill:
        return "assistant message prefill is not supported by this model"
    if anthropic and prefill != prefill.rstrip():
        return "messages: final assistant content cannot end with trailing whitespace"
    return None


def _tokens(text: str) -> list[str]:
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]] if words else []


def _oai_error(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code}}


def _error_body(b: Behavior, anthropic: bool) -> dict[str, Any]:
    if b.error_code == "context_length_exceeded":
        msg = "prompt is too long" if anthropic else "This model's maximum context length is 1024 tokens."
    else:
        msg = f"emulated HTTP {b.status}"
    if anthropic:
        kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(b.status, "api_error" if b.status >= 500
                                                                        else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": msg}}
    return _oai_error(msg, "server_error" if b.status >= 500 else "invalid_request_error", b.error_code)


def _usage(body: dict[str, Any], text: str) -> tuple[int, int]:
    return len(json.dumps(body.get("messages", []))) // 4, len(_tokens(text))


def _openai_completion(name: str, body: dict[str, Any], text: str, b: Behavior) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    finish = "stop"
    if b.tool_call:
        message = {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": b.tool_call["name"],
                                                              "arguments": b.tool_call.get("arguments", "{}")}}]}
        finish = "tool_calls"
    p, c = _usage(body, text)
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": str(body.get("model", name)),
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}}


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return (head + "data: " + json.dumps(data) + "\n\n").encode()


def _openai_events(name: str, body: dict[str, Any], text: str, b: Behavior) -> Iterator[tuple[bytes, bool]]:
    base = {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": str(body.get("model", name))}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    yield chunk({"role": "assistant", "content": ""}), False
    if b.tool_call:
        call = {"index": 0, "id": "call_1", "type": "function",
                "function": {"name": b.tool_call["name"], "arguments": b.tool_call.get("arguments", "{}")}}
        yield chunk({"tool_calls": [call]}), True
        yield chunk({}, "tool_calls"), False
    else:
        for tok in _tokens(text):
            yield chunk({"content": tok}), True
        yield chunk({}, "stop"), False
    if (body.get("stream_options") or {}).get("include_usage"):
        p, c = _usage(body, text)
        yield _sse({**base, "choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c,
                                                     "total_tokens": p + c}}), False
    yield b"data: [DONE]\n\n", False


def _anthropic_message(name: str, body: dict[str, Any], text: str, b: Behavior) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}]
    stop = "end_turn"
    if b.tool_call:
        content = [{"type": "tool_use", "id": "toolu_1", "name": b.tool_call["name"],
                    "input": json.loads(b.tool_call.get("arguments", "{}"))}]
        stop = "tool_use"
    p, c = _usage(body, text)
    return {"id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant",
            "model": str(body.get("model", name)), "content": content, "stop_reason": stop,
            "usage": {"input_tokens": p, "output_tokens": c}}


def _anthropic_events(name: str, body: dict[str, Any], text: str, b: Behavior) -> Iterator[tuple[bytes, bool]]:
    p, c = _usage(body, text)
    msg = {"id": f"msg_{uuid.uuid4().hex[:12]}", "type": "message", "role": "assistant", "content": [],
           "model": str(body.get("model", name)), "usage": {"input_tokens": p, "output_tokens": 0}}
    yield _sse({"type": "message_start", "message": msg}, "message_start"), False
    yield _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
               "content_block_start"), False
    yield _sse({"type": "ping"}, "ping"), False
    for tok in _tokens(text):
        yield _sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": tok}},
                   "content_block_delta"), True
    yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"), False
    yield _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": c}},
               "message_delta"), False
    yield _sse({"type": "message_stop"}, "message_stop"), False


def main(argv: list[str] | None = None) -> None:
    """Run the emulator in the foreground."""
    ap = argparse.ArgumentParser(prog="python -m llmrouter.testing.emulator", description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds before each answer starts")
    ap.add_argument("--token-delay", type=float, default=0.0, help="seconds between streamed tokens")
    ap.add_argument("--text", default=None, help="a fixed answer (default: echo the request)")
    args = ap.parse_args(argv)
    emu = Emulator(args.host, args.port, Behavior(latency_s=args.latency, token_delay_s=args.token_delay,
                                                   text=args.text))

    def ready() -> None:
        print(f"llmrouter emulator on {emu.url}  (OpenAI base_url: {emu.url}/NAME/v1)", flush=True)

    try:
        asyncio.run(emu.serve(ready))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
