"""Turn whatever a decider (or a cache, or a remote engine) returned into a route of the table.

Anything else — an unknown route, malformed JSON, a wrong type — becomes None plus a reason, and
the router answers with the default route. Nothing here raises.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import BaseModel, create_model

from llmrouter.config import RouteTable


def route_output_type(table: RouteTable, *, with_reason: bool = False) -> type[BaseModel]:
    """The pydantic model a constrained decider generates (Outlines locally, a JSON schema for a
    serving engine): `route` is the table's enum, nothing else can come out."""
    fields: dict[str, Any] = {"route": (table.route_enum, ...)}
    if with_reason:
        fields["reason"] = (str, ...)
    model: type[BaseModel] = create_model("RouteDecision", __config__={"extra": "forbid"}, **fields)
    return model


def extract_route(raw: Any, table: RouteTable) -> tuple[str | None, str]:
    """(route, "") when `raw` names a route of `table`; (None, why) otherwise."""
    value = raw
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None, "decider output is not UTF-8"
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                value = json.loads(text)
            except (ValueError, RecursionError):
                return None, f"decider output is malformed JSON: {_clip(text)}"
        else:
            value = text
    if isinstance(value, dict):
        value = value.get("route")
    elif hasattr(value, "route"):
        value = getattr(value, "route")
    if hasattr(value, "value") and isinstance(getattr(value, "value"), str):
        value = value.value  # an Enum member
    if not isinstance(value, str):
        return None, f"decider output has no route string (got {type(value).__name__})"
    if value not in table:
        return None, f"decider chose unknown route {_clip(value)!r}"
    return value, ""


def clean_scores(scores: Any, table: RouteTable) -> dict[str, float]:
    """Scores for the table's routes only, finite and within [0, 1]; {} if unusable."""
    if not isinstance(scores, dict):
        return {}
    out = {}
    for name in table.names:
        v = scores.get(name)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            out[name] = min(max(float(v), 0.0), 1.0)
    return out


def _clip(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[:n] + "..."
