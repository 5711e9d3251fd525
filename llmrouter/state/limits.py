"""The policy's and the key meter's windows on a SharedWindow, with the interfaces of the local
ones they replace (policy/limits.py RateWindow and SpendLedger, server/auth.py RequestRate)."""

from __future__ import annotations

from collections.abc import Sequence

from llmrouter.state.link import Read
from llmrouter.state.windows import SharedWindow, hashed


class SharedRateWindow:
    """Decisions and "up" decisions in the window, overall and per surface (as RateWindow)."""

    def __init__(self, window: SharedWindow) -> None:
        self.w = window

    def record(self, surface: str, up: bool) -> None:
        scopes = ("", surface) if surface else ("",)
        amounts = {f"total:{s}": 1.0 for s in scopes}
        if up:
            amounts.update({f"up:{s}": 1.0 for s in scopes})
        self.w.add(amounts)

    def rate(self, surface: str = "") -> tuple[int, int]:
        (ups, _), (total, _) = self.w.sums([f"up:{surface}", f"total:{surface}"])
        return round(ups), round(total)

    def allows_up(self, max_rate: float, min_requests: int, surface: str = "") -> bool:
        ups, total = self.rate(surface)
        return ups + 1 <= max_rate * max(total + 1, min_requests) + 1e-9

    def retry_after(self, surface: str = "") -> float:
        ((_, oldest),) = self.w.sums([f"up:{surface}"])
        return self.w.wait(oldest)


class SharedLedger:
    """USD spent in the window per caller key, tier and tenant (as SpendLedger)."""

    def __init__(self, window: SharedWindow) -> None:
        self.w = window

    def add(self, key: str, usd: float) -> None:
        self.add_each((key,), usd)

    def add_each(self, keys: tuple[str, ...], usd: float) -> None:
        """`usd` to each of `keys` (a key, its tier, its tenant) in one command."""
        if usd > 0 and keys:
            self.w.add({hashed(k): usd for k in keys})

    def spent(self, key: str) -> float:
        ((usd, _),) = self.w.sums([hashed(key)])
        return max(0.0, usd)

    def retry_after(self, key: str) -> float:
        ((_, oldest),) = self.w.sums([hashed(key)])
        return self.w.wait(oldest)

    def usage(self, keys: Sequence[str], caps: Sequence[float] | None = None) -> list[tuple[float, float]]:
        """(spent, seconds until its oldest spend leaves the window) of each key, in one round trip
        (none while each is far below its cap in `caps`: state/headroom.py)."""
        return self.w.link.read(self.usage_read(keys, caps))

    def usage_read(self, keys: Sequence[str], caps: Sequence[float] | None = None) -> Read[list[tuple[float, float]]]:
        return self.w.sums_read([hashed(k) for k in keys], caps).then(
            lambda sums: [(max(0.0, usd), self.w.wait(oldest)) for usd, oldest in sums])


class SharedRequestRate:
    """Requests or tokens per key in the last minute (as RequestRate): admitted atomically."""

    def __init__(self, window: SharedWindow) -> None:
        self.w = window

    def admit(self, key_id: str, per_window: int, weight: int = 1) -> float | None:
        """None when `weight` more fits `per_window` (and is counted), else seconds until it would."""
        return self.w.link.read(self.admit_read(key_id, per_window, weight))

    def admit_read(self, key_id: str, per_window: int, weight: int = 1) -> Read[float | None]:
        """A weight of 0 only asks whether the window is full; else checked and counted in one Lua
        call. Either is answered here while the window is far from full (state/headroom.py)."""
        if per_window <= 0:
            return Read.known(None)
        if weight == 0:
            return self.w.sums_read([key_id], [per_window]).then(
                lambda sums: None if sums[0][0] < per_window else max(0.001, self.w.wait(sums[0][1])))
        return self.w.admit_read(key_id, per_window, weight)

    def give_back(self, key_id: str, weight: int) -> None:
        """Uncount what `admit` counted for a request refused for another reason."""
        self.w.add({key_id: -float(weight)})

    def add(self, key_id: str, weight: int) -> None:
        if weight:
            self.w.add({key_id: float(weight)})
