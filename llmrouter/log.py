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


def configure(fmt: str | None = None, level: str | None = None, stream: Any = None) -> None:
    """Configure structlog. fmt: "json", "console" or None (console on a terminal, else JSON);
    stream: where lines go (default: whatever sys.stderr is at the time of each line)."""
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
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level_name, logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    _configured = True


def get_logger(name: str = "llmrouter") -> Any:
    return structlog.get_logger(name)
