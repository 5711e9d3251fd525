"""JSON documents shared through Redis with a TTL (GET / SET EX): the decision cache's entries,
when `[state] decision_cache = true`. Keys are already hashes (cache.py): no request text."""

from __future__ import annotations

import json
from typing import Any

from llmrouter.state.link import Link, Write


class SharedDocuments:
    def __init__(self, link: Link, prefix: str, ttl_s: float) -> None:
        self.link, self.prefix, self.ttl_s = link, prefix, ttl_s

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self.link.call(lambda r: r.get(f"{self.prefix}:{key}"), None)
        try:
            value = json.loads(raw) if raw else None
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def set(self, key: str, value: dict[str, Any]) -> None:
        body = json.dumps(value, ensure_ascii=False)
        self.link.later(Write(lambda r: r.set(f"{self.prefix}:{key}", body, ex=max(1, int(self.ttl_s)))))
