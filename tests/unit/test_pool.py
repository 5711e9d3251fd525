"""The decider pool: requests that wait together are decided together, a request alone is decided
at once, callers that gave up are skipped, and failures reach every waiting caller (no model)."""

from __future__ import annotations

import threading
import time

import pytest

from llmrouter.deciders.pool import DeciderPool
from llmrouter.errors import DeciderError
from llmrouter.types import Verdict


class Batching:
    """Decides `route-of-<text>`; the first decision blocks until `release` is set."""

    name = "batching"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.calls: list[list[str]] = []

    def decide(self, text: str, *, explain: bool = False) -> Verdict:
        self.calls.append([text])
        self.started.set()
        self.release.wait(5)
        if text == "boom":
            raise RuntimeError("llama.cpp fell over")
        return Verdict(route=f"r-{text}", reason="why" if explain else None)

    def decide_batch(self, texts: list[str]) -> list[Verdict]:
        self.calls.append(list(texts))
        if "boom" in texts:
            raise DeciderError("batch failed")
        return [Verdict(route=f"r-{t}") for t in texts]


def test_requests_waiting_together_are_decided_in_one_batch():
    d = Batching()
    pool = DeciderPool([d], max_batch=3)
    first = pool.submit("a")
    assert d.started.wait(5)
    rest = [pool.submit(t) for t in "bcde"]  # queued while the model is busy
    d.release.set()
    assert first.result(5).route == "r-a"
    assert [f.result(5).route for f in rest] == ["r-b", "r-c", "r-d", "r-e"]
    assert d.calls == [["a"], ["b", "c", "d"], ["e"]]  # batches of at most max_batch, in order
    pool.close()


def test_a_caller_that_gave_up_is_skipped_and_explain_is_decided_alone():
    d = Batching()
    pool = DeciderPool([d], max_batch=8)
    pool.submit("a")
    assert d.started.wait(5)
    gone, kept, why = pool.submit("gone"), pool.submit("kept"), pool.submit("why", explain=True)
    assert gone.cancel()
    d.release.set()
    assert kept.result(5).route == "r-kept" and why.result(5).reason == "why"
    assert ["gone"] not in d.calls and ["why"] in d.calls and ["kept"] in d.calls
    pool.close()


def test_failures_reach_every_waiting_caller_as_decider_errors():
    d = Batching()
    pool = DeciderPool([d], max_batch=8)
    first = pool.submit("boom")
    assert d.started.wait(5)
    batch = [pool.submit("x"), pool.submit("boom")]
    d.release.set()
    with pytest.raises(DeciderError, match="RuntimeError: llama.cpp fell over"):
        first.result(5)
    for f in batch:
        with pytest.raises(DeciderError, match="batch failed"):
            f.result(5)
    pool.close()


def test_several_workers_decide_side_by_side():
    class Slow:
        name = "slow"

        def decide(self, text: str, *, explain: bool = False) -> Verdict:
            time.sleep(0.2)
            return Verdict(route=threading.current_thread().name)

    pool = DeciderPool([Slow(), Slow()])
    futures = [pool.submit(str(i)) for i in range(2)]
    workers = {f.result(5).route for f in futures}
    assert workers == {"llmrouter-decider-0", "llmrouter-decider-1"}
    pool.close()
