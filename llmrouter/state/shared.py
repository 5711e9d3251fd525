"""SharedState: one Redis connection (and its circuit) and the shared structures built on it,
each under its own key prefix: `<prefix>:<scope>:...`."""

from __future__ import annotations

from typing import Any

from llmrouter.config.state import StateSettings
from llmrouter.state.documents import SharedDocuments
from llmrouter.state.flags import SharedFlag
from llmrouter.state.limits import SharedLedger, SharedRateWindow, SharedRequestRate
from llmrouter.state.link import Link, log
from llmrouter.state.sessions import SharedSessions
from llmrouter.state.totals import SharedSpend, SharedTotal
from llmrouter.state.windows import SharedWindow


class SharedState:
    """What every process naming the same [state] url shares."""

    def __init__(self, settings: StateSettings, client: Any = None) -> None:
        self.settings = settings
        self.link = Link(settings, client)

    def key(self, *parts: str) -> str:
        return ":".join((self.settings.prefix, *parts))

    def window(self, scope: str, window_s: float) -> SharedWindow:
        s = self.settings
        return SharedWindow(self.link, self.key(scope), window_s, s.read_ttl_s, local_below=s.local_below)

    def escalations(self, table: str, window_s: float) -> SharedRateWindow:
        return SharedRateWindow(self.window(f"t:{table}:esc", window_s))

    def ledger(self, table: str, window_s: float) -> SharedLedger:
        # checked against a cap: read fresh unless far below it (state/headroom.py)
        return SharedLedger(self.window(f"t:{table}:spend", window_s))

    def sessions(self, table: str, ttl_s: float, max_sessions: int) -> SharedSessions:
        s = self.settings
        read_ttl_s = s.read_ttl_s if s.session_read_ttl_s is None else s.session_read_ttl_s
        return SharedSessions(self.link, self.key(f"t:{table}:session"), ttl_s, read_ttl_s, max_sessions)

    def request_rate(self, what: str) -> SharedRequestRate:
        """Per API key, per minute: `what` is "rpm" or "tpm"."""
        return SharedRequestRate(self.window(f"key:{what}", 60.0))

    def key_spend(self) -> SharedSpend:
        s = self.settings
        total = SharedTotal(self.link, self.key("key:spent_micro_usd"), s.read_ttl_s, local_below=s.local_below)
        return SharedSpend(total)

    def breaker_flag(self, target: str) -> SharedFlag:
        return SharedFlag(self.link, self.key("breaker", target), self.settings.read_ttl_s)

    def decisions(self) -> SharedDocuments:
        """The decision cache's entries (with [state] decision_cache = true)."""
        return SharedDocuments(self.link, self.key("decision"), self.settings.decision_cache_ttl_s)

    def close(self) -> None:
        self.link.close()


def connect(settings: StateSettings | None) -> SharedState | None:
    """The shared state a table's [state] names (None without it). Redis being down is no error:
    the process starts on local state and joins when Redis answers."""
    if settings is None:
        return None
    state = SharedState(settings)
    if state.link.check():
        log.info("shared state", url=settings.safe_url())
    return state
