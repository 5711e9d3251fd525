"""The decision cache: diskcache with JSON values (no pickle), keyed by everything that decides.

A cache that cannot be opened, is locked, full or corrupt turns itself off with one warning:
routing goes on without it, never fails because of it. `share` adds a second level every process
on one Redis shares ([state] decision_cache): a local miss asks it, and a new entry goes to both.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import unicodedata
from pathlib import Path
from typing import Any, Protocol

import structlog

log = structlog.get_logger("llmrouter.cache")

# The errors a broken, locked or full cache raises; all of them mean "carry on without it".
CACHE_ERRORS: tuple[type[BaseException], ...] = (OSError, sqlite3.Error, ValueError, TypeError)


def normalize(text: str) -> str:
    """The request text as the cache sees it: NFC, whitespace runs collapsed, ends stripped."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def cache_key(
    text: str,
    *,
    table_fingerprint: str,
    prompt_version: str,
    model_sha256: str,
    settings: dict[str, Any],
) -> str:
    """One key from the normalised request and everything else that can change the decision."""
    blob = json.dumps(
        {
            "text": normalize(text),
            "table": table_fingerprint,
            "prompt": prompt_version,
            "model": model_sha256,
            "settings": settings,
        },
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


class SharedEntries(Protocol):
    """The shared level (llmrouter.state SharedDocuments)."""

    def get(self, key: str) -> dict[str, Any] | None: ...
    def set(self, key: str, value: dict[str, Any]) -> None: ...


class DecisionCache:
    """get/set JSON-able dicts by key; degrades to a no-op cache on any storage error."""

    shared: SharedEntries | None = None  # the second level, once `share`d

    def __init__(self, directory: Path, *, size_mb: int = 256) -> None:
        self.directory = Path(directory)
        self._cache: Any = None
        self.disabled_reason: str | None = None
        try:
            import diskcache

            self._cache = diskcache.Cache(
                str(self.directory),
                disk=diskcache.JSONDisk,
                disk_compress_level=0,
                size_limit=size_mb * 1024 * 1024,
                timeout=0.05,  # a locked cache must not stall a decision
                eviction_policy="least-recently-stored",
            )
        except CACHE_ERRORS + (Exception,) as exc:  # noqa: B014 - diskcache raises sqlite/OSError/Timeout
            self._disable("open", exc)

    @property
    def enabled(self) -> bool:
        return self._cache is not None

    def _disable(self, op: str, exc: BaseException) -> None:
        self.disabled_reason = f"{op}: {type(exc).__name__}: {exc}"
        log.warning(
            "decision cache disabled",
            directory=str(self.directory),
            error=self.disabled_reason,
            hint="delete the directory to start a fresh cache, or set [router] cache = false",
        )
        try:
            if self._cache is not None:
                self._cache.close()
        except Exception:  # noqa: BLE001 - closing a broken cache may fail too
            pass
        self._cache = None

    def share(self, shared: SharedEntries) -> None:
        self.shared = shared

    def get(self, key: str) -> dict[str, Any] | None:
        value = self._get(key)
        if value is None and self.shared is not None:
            value = self.shared.get(key)
            if value is not None:
                self._set(key, value)
        return value

    def set(self, key: str, value: dict[str, Any]) -> None:
        self._set(key, value)
        if self.shared is not None:
            self.shared.set(key, value)

    def _get(self, key: str) -> dict[str, Any] | None:
        if self._cache is None:
            return None
        try:
            value = self._cache.get(key, default=None, retry=False)
        except Exception as exc:  # noqa: BLE001 - diskcache.Timeout, sqlite3 errors, bad JSON
            self._disable("get", exc)
            return None
        return value if isinstance(value, dict) else None

    def _set(self, key: str, value: dict[str, Any]) -> None:
        if self._cache is None:
            return
        try:
            self._cache.set(key, value, retry=False)
        except Exception as exc:  # noqa: BLE001
            self._disable("set", exc)

    def clear(self) -> None:
        if self._cache is not None:
            try:
                self._cache.clear()
            except Exception as exc:  # noqa: BLE001
                self._disable("clear", exc)

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
