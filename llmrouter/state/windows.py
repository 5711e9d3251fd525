"""Sliding windows shared through Redis: one hash per series, one field per bucket (a
`buckets`-th of the window), pruned and summed atomically by Lua. Adds also go to a local mirror
of the same buckets, which answers while Redis is down."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from llmrouter.state.headroom import Headroom
from llmrouter.state.link import DOWN, Link, Read, Write

Clock = Callable[[], float]

_SUM = """
local function window_sum(key, now, n)
  local sum, oldest = 0, -1
  local kv = redis.call('HGETALL', key)
  for j = 1, #kv, 2 do
    local b = tonumber(kv[j])
    if b <= now - n then
      redis.call('HDEL', key, kv[j])
    else
      sum = sum + tonumber(kv[j + 1])
      if oldest < 0 or b < oldest then oldest = b end
    end
  end
  return sum, oldest
end
"""
# KEYS: the series; ARGV: bucket now, buckets per window, ttl ms, then one amount per key (0: read only)
ADD_AND_SUM = _SUM + """
local now, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local add = tonumber(ARGV[3 + i])
  if add ~= 0 then
    redis.call('HINCRBYFLOAT', key, ARGV[1], ARGV[3 + i])
    redis.call('PEXPIRE', key, ARGV[3])
  end
  local sum, oldest = window_sum(key, now, n)
  out[i] = {tostring(sum), oldest}
end
return out
"""
# KEYS[1]: the series; ARGV: bucket now, buckets per window, ttl ms, limit, weight.
# {1, sum} when weight fits under limit (and is counted); else {0, sum, oldest bucket}
ADMIT = _SUM + """
local now, n, limit, weight = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4]), tonumber(ARGV[5])
local sum, oldest = window_sum(KEYS[1], now, n)
if sum >= limit or (weight > 0 and sum + weight > limit and sum > 0) then
  return {0, tostring(sum), oldest}
end
if weight > 0 then
  redis.call('HINCRBYFLOAT', KEYS[1], ARGV[1], ARGV[5])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return {1, tostring(sum + weight), oldest}
"""


def run_script(script: Any, client: Any, keys: list[str], args: list[Any]) -> Any:
    """A registered script on a client, or queued on a pipeline as a bare EVALSHA: redis-py would
    spend a round trip on SCRIPT EXISTS before each pipeline (the link reruns a write alone, where
    the script loads itself, when Redis answers NOSCRIPT)."""
    from redis.asyncio.client import Pipeline as AsyncPipeline
    from redis.client import Pipeline

    if isinstance(client, (Pipeline, AsyncPipeline)):
        return client.evalsha(script.sha, len(keys), *keys, *args)
    return script(keys=keys, args=args, client=client)


def hashed(name: str) -> str:
    """A caller's name as a Redis key part: a short hash (user ids and emails stay out of Redis)."""
    return hashlib.sha256(name.encode()).hexdigest()[:20]


class Buckets:
    """The local mirror: the same bucketed sums, in this process only."""

    def __init__(self, n: int, max_series: int = 100_000) -> None:
        self.n, self.max_series = n, max_series
        self._series: OrderedDict[str, dict[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, key: str, bucket: int, amount: float) -> None:
        with self._lock:
            series = self._series.setdefault(key, {})
            series[bucket] = series.get(bucket, 0.0) + amount
            self._series.move_to_end(key)
            while len(self._series) > self.max_series:
                self._series.popitem(last=False)

    def sum(self, key: str, bucket: int) -> tuple[float, int]:
        """(sum, oldest bucket with something in it, or -1)."""
        with self._lock:
            series = self._series.get(key, {})
            for b in [b for b in series if b <= bucket - self.n]:
                del series[b]
            return sum(series.values()), min(series, default=-1)


class SharedWindow:
    """Sums of named series over the last `window_s`, shared by every process on one Redis. A sum
    read (or brought back by an add) within read_ttl_s is reused: always where no limit is given,
    and against a limit while far below it (state/headroom.py)."""

    def __init__(self, link: Link, prefix: str, window_s: float, read_ttl_s: float, clock: Clock = time.time,
                 buckets: int = 60, local_below: float = 0.0) -> None:
        self.link, self.prefix, self.window_s, self.clock = link, prefix, window_s, clock
        self.n, self.width = buckets, window_s / buckets
        self.ttl_ms = int((window_s + self.width) * 1000) + 1
        self.local = Buckets(buckets)
        self.known = Headroom(read_ttl_s, local_below)  # series -> sum read, and adds unanswered
        self._add, self._admit = link.script(ADD_AND_SUM), link.script(ADMIT)

    def _bucket(self) -> int:
        return int(self.clock() // self.width)

    def _key(self, series: str) -> str:
        return f"{self.prefix}:{series}"

    def add(self, amounts: dict[str, float]) -> None:
        """Add to each series now (one command for all of them; with the link's open batch, if any)."""
        bucket, now = self._bucket(), self.clock()
        for series, amount in amounts.items():
            self.local.add(series, bucket, amount)
        self.known.sent(amounts)
        keys, args = [self._key(s) for s in amounts], [bucket, self.n, self.ttl_ms, *amounts.values()]

        def remember(out: Any) -> None:
            sums = {series: (float(total), int(oldest)) for series, (total, oldest) in zip(amounts, out)}
            self.known.came_back(amounts, now, sums)

        self.link.later(Write(lambda r: run_script(self._add, r, keys, args), done=remember,
                              failed=lambda: self.known.came_back(amounts, now)))

    def sums(self, series: Sequence[str], limits: Sequence[float] | None = None) -> list[tuple[float, int]]:
        """(sum, oldest bucket) of each series: a read younger than read_ttl_s is reused (with
        `limits`, only while each sum is far below its limit)."""
        return self.link.read(self.sums_read(series, limits))

    def sums_read(self, series: Sequence[str], limits: Sequence[float] | None = None) -> Read[list[tuple[float, int]]]:
        """`sums` as a Read, to go with others in one round trip."""
        now = self.clock()
        known = [self.known.estimate(s, now) for s in series]
        here = [k for k in known if k is not None]
        if len(here) == len(known) and (limits is None or all(self.known.room(k, lim) for k, lim in zip(here, limits))):
            return Read.known(here)
        keys, args = [self._key(s) for s in series], [self._bucket(), self.n, self.ttl_ms, *([0] * len(series))]

        def finish(out: Any) -> list[tuple[float, int]]:
            if out is DOWN:
                bucket = self._bucket()
                return [self.local.sum(s, bucket) for s in series]
            for s, (total, oldest) in zip(series, out):
                self.known.saw(s, float(total), now, int(oldest))
            return [(float(total), int(oldest)) for total, oldest in out]
        return Read(lambda r: run_script(self._add, r, keys, args), finish)

    def admit(self, series: str, limit: float, weight: float) -> float | None:
        """None when `weight` more fits under `limit` (and is counted), else seconds until it may."""
        return self.link.read(self.admit_read(series, limit, weight))

    def admit_read(self, series: str, limit: float, weight: float) -> Read[float | None]:
        """`admit` as a Read, to go with others in one round trip; far below the limit, admitted
        here and counted unwaited."""
        now = self.clock()
        known = self.known.estimate(series, now)
        if weight > 0 and known is not None and self.known.room((known[0] + weight, known[1]), limit):
            def count_here(_: Any) -> None:  # admitted: counted unwaited
                self.add({series: weight})
            return Read(None, count_here)
        bucket = self._bucket()
        args = [bucket, self.n, self.ttl_ms, limit, weight]

        def finish(out: Any) -> float | None:
            if out is DOWN:  # the local mirror decides
                used, oldest = self.local.sum(series, bucket)
                full = used >= limit or (weight > 0 and used + weight > limit and used > 0)
                out = [0, used, oldest] if full else [1, used + weight]
            else:
                self.known.saw(series, float(out[1]), now, int(out[2]) if int(out[2]) >= 0 else bucket)
            if int(out[0]) == 1:
                if weight:
                    self.local.add(series, bucket, weight)
                return None
            return max(0.001, self.wait(int(out[2]))) if int(out[2]) >= 0 else self.window_s
        return Read(lambda r: run_script(self._admit, r, [self._key(series)], args), finish)

    def wait(self, oldest: int) -> float:
        """Seconds until the bucket `oldest` leaves the window (0 when there is none)."""
        return max(0.0, (oldest + self.n) * self.width - self.clock()) if oldest >= 0 else 0.0
