"""The queue in front of the router model: requests wait here, and each worker decides the ones
waiting together in one batch.

One worker thread per decider (`[router] workers`, each with its own llama.cpp context). A worker
takes the oldest waiting request and, with it, every other one waiting (up to `max_batch`), and
asks its decider for all of them at once when the decider can batch (`decide_batch`): one forward
pass over the shared warm prefix instead of one per request. A request alone is decided as before,
without waiting for company. A request whose caller gave up (cancelled future) is skipped.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from llmrouter.errors import DeciderError
from llmrouter.types import Verdict


@dataclass
class Job:
    text: str
    explain: bool
    future: Future[Verdict] = field(default_factory=Future)


class DeciderPool:
    """Worker threads, one per decider, fed from one queue; `submit` returns a Future."""

    def __init__(self, deciders: Sequence[Any], max_batch: int = 8) -> None:
        if not deciders:
            raise ValueError("a decider pool needs at least one decider")
        self.deciders = list(deciders)
        self.max_batch = max(1, max_batch)
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self.per_worker = [0] * len(self.deciders)  # requests each worker decided

    @property
    def waiting(self) -> int:
        """Requests queued for a worker (approximate)."""
        return self._jobs.qsize()

    def submit(self, text: str, explain: bool = False) -> Future[Verdict]:
        self._start()
        job = Job(text, explain)
        self._jobs.put(job)
        return job.future

    def decide(self, text: str, explain: bool = False) -> Verdict:
        """Queue `text` and wait for its verdict (raises what the decider raised)."""
        return self.submit(text, explain).result()

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        self._threads = []

    # --- the workers -----------------------------------------------------------------------
    def _start(self) -> None:
        if self._threads:
            return
        with self._start_lock:
            if self._threads:
                return
            threads = [threading.Thread(target=self._work, args=(i, d), daemon=True, name=f"llmrouter-decider-{i}")
                       for i, d in enumerate(self.deciders)]
            for t in threads:
                t.start()
            self._threads = threads

    def _work(self, index: int, decider: Any) -> None:
        batched = getattr(decider, "decide_batch", None)
        while True:
            first = self._jobs.get()
            if first is None:
                return
            batch = self._take_more(first) if batched is not None else [first]
            live = [j for j in batch if j.future.set_running_or_notify_cancel()]
            self.per_worker[index] += len(live)
            if live:
                self._decide(decider, live)

    def _take_more(self, first: Job) -> list[Job]:
        """`first` and the requests already waiting behind it that can share its batch."""
        batch = [first]
        if first.explain:
            return batch
        while len(batch) < self.max_batch:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:  # closing: let another worker (or this one, next loop) see it
                self._jobs.put(None)
                break
            if job.explain:  # explanations generate text: decided alone, next
                self._jobs.put(job)
                break
            batch.append(job)
        return batch

    def _decide(self, decider: Any, jobs: list[Job]) -> None:
        if len(jobs) > 1:
            try:
                verdicts = decider.decide_batch([j.text for j in jobs])
            except Exception as exc:  # noqa: BLE001 - every waiting request learns why
                for j in jobs:
                    j.future.set_exception(_as_decider_error(exc))
                return
            for j, v in zip(jobs, verdicts):
                j.future.set_result(v)
            return
        for j in jobs:
            try:
                j.future.set_result(decider.decide(j.text, explain=j.explain))
            except Exception as exc:  # noqa: BLE001
                j.future.set_exception(_as_decider_error(exc))


def _as_decider_error(exc: BaseException) -> DeciderError:
    if isinstance(exc, DeciderError):
        return exc
    return DeciderError(f"{type(exc).__name__}: {exc}")
