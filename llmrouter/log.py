"""structlog setup: JSON lines in production, readable lines in a terminal, secrets never printed."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

SECRET_KEYS = re.compile(r"(api[_-]?key|authorization|secret|token|password|cookie)", re.I)
SECRET_VALUES = re.compile(
    r"(sk-[A-Za-z0-9_\-]{8,}|sk-ant-[A-Za-z0-9_\-]{8,}|Bearer\s+[A-Za-z0-9._\-]{8,}|"
    r"AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{20,})"
)
REDACTED = "***"
_configured = False


def redact(value: Any, key: str = "") -> Any:
    """`value` with secrets masked: values under secret-looking keys, key-shaped strings anywhere."""
    if key and SECRET_KEYS.search(key) and not key.endswith(("_env", "_tokens", "tokens")):
        return REDACTED if value not in (None, "", 0) else value
    if isinstance(value, str):
        return SECRET_VALUES.sub(REDACTED, value)
    if isinstance(value, dict):
        return {k: redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v) for v in value)
    return value


def redact_processor(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> dict[str, Any]:
    """A structlog processor: the last word before anything is rendered."""
    return {k: redact(v, k) for k, v in event.items()}


class _Stderr:
    """sys.stderr as it is when a line is written, not as it was when logging was configured
    (test runners and daemons swap it; a closed old stream must never fail a request)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure(fmt: str | None = None, level: str | None = None, stream: Any = None, *, stdlib: bool = False) -> None:
    """Configure structlog. fmt: "json", "console" or None (console on a terminal, else JSON);
    stream: where lines go (default: whatever sys.stderr is at the time of each line). With
    `stdlib`, the standard library's loggers (uvicorn's error and access logs, httpx...) are
    rendered the same way, through the same redaction."""
    global _configured
    fmt = fmt or os.environ.get("LLMROUTER_LOG_FORMAT")
    stream = stream or _Stderr()
    if fmt is None:
        fmt = "console" if stream.isatty() else "json"
    level_name = (level or os.environ.get("LLMROUTER_LOG_LEVEL") or "info").upper()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if stdlib:
        _route_stdlib(shared, renderer, stream, level_name)
    structlog.configure(
        processors=[*shared, redact_processor, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level_name, logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    _configured = True


def _route_stdlib(shared: list[Any], renderer: Any, stream: Any, level_name: str) -> None:
    """One root handler that renders stdlib records like structlog's events (tracebacks as text,
    then redacted); library loggers that set up their own handlers hand them over to it."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name, structlog.processors.format_exc_info],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, redact_processor, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(logging.getLevelNamesMapping().get(level_name, logging.INFO))
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)
        lg.handlers, lg.propagate = [], True


def library_default() -> None:
    """llmrouter used as a library, structlog not configured by anyone: events go to the standard
    `logging` logger "llmrouter" as JSON (redacted) — silent unless the application turns logging
    on, and never on stdout (structlog's own default). An application's structlog setup wins."""
    logging.getLogger("llmrouter").addHandler(logging.NullHandler())
    if structlog.is_configured():
        return
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True), redact_processor,
                    structlog.processors.JSONRenderer()],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "llmrouter") -> Any:
    return structlog.get_logger(name)


library_default()
