"""Logging a provider attempt without risking the request, and summing attempts up for an error."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import structlog

from llmrouter.types import Attempt

log = structlog.get_logger("llmrouter")


def safe_log(level: str, event: str, **fields: Any) -> None:
    """Log on the request path; like logging.Handler.handleError, a broken sink never fails a request."""
    try:
        getattr(log, level)(event, **fields)
    except (OSError, ValueError):
        pass


def summarize_attempts(attempts: Sequence[Attempt]) -> str:
    """'a: HTTP 500 (x3); b: circuit open' - what went wrong, one clause per target."""
    parts: dict[str, list[str]] = {}
    for a in attempts:
        if a.outcome in ("failed", "skipped"):
            reason = a.reason.removeprefix(f"{a.target}: ")
            parts.setdefault(a.target, []).append(reason)
    return "; ".join(
        f"{t}: {rs[-1]}" + (f" (x{len(rs)})" if len(rs) > 1 else "") for t, rs in parts.items()
    )
