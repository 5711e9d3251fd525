"""The server's metrics, rendered as Prometheus text at /metrics: one registry for everything.

    llmrouter_in_flight                                      requests being answered (gauge)
    llmrouter_circuit_state{target}                          0 closed, 1 half-open, 2 open (gauge)
    llmrouter_requests_total{route,target,outcome}           requests, by how they ended
    llmrouter_attempts_total{target,outcome}                 provider attempts
    llmrouter_response_start_seconds{status}                 histogram: to the first token (streams)
                                                             or to the whole answer
    llmrouter_stream_seconds                                 histogram: whole streams
    llmrouter_route_requests_total{route,surface,source}     decisions, by who decided
    llmrouter_route_escalations_total{route,surface,from}    decisions moved up a tier
    llmrouter_route_confidence{route}                        histogram of the router's confidence
    llmrouter_route_answers_total{route,target,surface}      answers served
    llmrouter_route_fallbacks_total{route,target}            failed attempts before an answer
    llmrouter_route_errors_total{route,surface,status}       requests that ended in an error
    llmrouter_route_latency_seconds{route,target}            histogram, whole answer
    llmrouter_route_tokens_total{route,target,kind}          prompt / completion tokens
    llmrouter_route_cost_usd_total{route,target,surface}     from the targets' prices
    llmrouter_route_feedback_total{route,target,surface}     feedback received, and
    llmrouter_route_feedback_score_sum{route,target,surface} the sum of its scores (0..1)
    llmrouter_alerts_total{kind}                             alert events
    llmrouter_stream_continuations_total{route,target}       streams cut mid-answer and finished by target
    llmrouter_hedges_total{outcome}                          hedges sent, won (answered first), denied (budget)

Labels are bounded: routes and targets come from the table, surfaces from requests, so a
surface outside the table's [surfaces] is counted as "other" (a client cannot grow the series).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from collections.abc import Mapping
from typing import Any

from llmrouter.fallback import CircuitBreaker
from llmrouter.types import Attempt, Completion, Decision, Request

Labels = tuple[tuple[str, str], ...]
LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RESPONSE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
CIRCUIT = {"closed": 0, "half_open": 1, "open": 2}
CONFIDENCE_BUCKETS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


class Registry:
    """Counters and histograms, rendered as Prometheus text."""

    def __init__(self) -> None:
        self.counters: dict[tuple[str, Labels], float] = defaultdict(float)
        self.hists: dict[tuple[str, Labels], tuple[tuple[float, ...], list[float]]] = {}
        self.lock = threading.Lock()

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        with self.lock:
            self.counters[(name, tuple(sorted(labels.items())))] += value

    def observe(self, name: str, value: float, buckets: tuple[float, ...], **labels: str) -> None:
        with self.lock:
            key = (name, tuple(sorted(labels.items())))
            if key not in self.hists:
                self.hists[key] = (buckets, [0.0] * (len(buckets) + 2))
            bounds, h = self.hists[key]
            for i, b in enumerate(bounds):
                if value <= b:
                    h[i] += 1
            h[-2] += value
            h[-1] += 1

    def value(self, name: str, **labels: str) -> float:
        return self.counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def render(self) -> str:
        out: list[str] = []
        with self.lock:
            counters, hists = dict(self.counters), {k: (b, list(h)) for k, (b, h) in self.hists.items()}
        for name in sorted({k[0] for k in counters}):
            out.append(f"# TYPE {name} counter")
            out += [f"{name}{_labels(lab)} {v:g}" for (n, lab), v in sorted(counters.items()) if n == name]
        for name in sorted({k[0] for k in hists}):
            out.append(f"# TYPE {name} histogram")
            for (n, lab), (bounds, h) in sorted(hists.items()):
                if n != name:
                    continue
                for b, c in zip(bounds, h):
                    out.append(f"{name}_bucket{_labels(lab + (('le', f'{b:g}'),))} {c:g}")
                out.append(f"{name}_bucket{_labels(lab + (('le', '+Inf'),))} {h[-1]:g}")
                out += [f"{name}_sum{_labels(lab)} {h[-2]:.6f}", f"{name}_count{_labels(lab)} {h[-1]:g}"]
        return "\n".join(out) + ("\n" if out else "")


def _labels(pairs: Labels) -> str:
    if not pairs:
        return ""
    esc = lambda v: str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")  # noqa: E731
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in pairs) + "}"




class ServerMetrics:
    """What the server did, per route, target and surface, and the answers waiting for feedback."""

    def __init__(self, surfaces: set[str] | None = None, remember: int = 100_000) -> None:
        self.reg = Registry()
        self.surfaces = set(surfaces or ())
        self.remember = remember
        self.in_flight = 0
        self._answers: OrderedDict[str, tuple[str, str, str]] = OrderedDict()

    def attempt(self, a: Attempt) -> None:
        self.reg.inc("llmrouter_attempts_total", target=a.target, outcome=a.outcome)

    def request(self, route: str, target: str, outcome: str) -> None:
        self.reg.inc("llmrouter_requests_total", route=route, target=target, outcome=outcome)

    def response_started(self, seconds: float, status: int) -> None:
        self.reg.observe("llmrouter_response_start_seconds", seconds, RESPONSE_BUCKETS, status=str(status))

    def stream_ended(self, seconds: float) -> None:
        self.reg.observe("llmrouter_stream_seconds", seconds, RESPONSE_BUCKETS)

    def surface(self, request: Request | None) -> str:
        name = str((request.metadata if request is not None else {}).get("surface") or "")
        if not name:
            return "none"
        return name if name in self.surfaces else "other"

    def decision(self, decision: Decision | None, request: Request) -> None:
        if decision is None:
            return
        surface = self.surface(request)
        self.reg.inc("llmrouter_route_requests_total", route=decision.route, surface=surface, source=decision.source)
        if decision.escalated_from:
            labels = {"route": decision.route, "surface": surface, "from": decision.escalated_from}
            self.reg.inc("llmrouter_route_escalations_total", 1.0, **labels)
        if decision.confidence is not None:
            self.reg.observe("llmrouter_route_confidence", decision.confidence, CONFIDENCE_BUCKETS, route=decision.route)

    def answer(self, done: Completion, request: Request, response_id: str) -> None:
        """Count one answer (non-streamed: with its decision; streamed: decision counted at start)."""
        route, target, surface = done.route or "-", done.target, self.surface(request)
        self.reg.inc("llmrouter_route_answers_total", route=route, target=target, surface=surface)
        if done.continued_by:
            self.reg.inc("llmrouter_stream_continuations_total", route=route, target=done.continued_by)
        fallbacks = sum(1 for a in done.attempts if a.outcome == "failed")
        if fallbacks:
            self.reg.inc("llmrouter_route_fallbacks_total", fallbacks, route=route, target=target)
        self.reg.observe("llmrouter_route_latency_seconds", done.latency_ms / 1000, LATENCY_BUCKETS, route=route, target=target)
        self.reg.inc("llmrouter_route_tokens_total", done.usage.prompt_tokens, route=route, target=target, kind="prompt")
        self.reg.inc("llmrouter_route_tokens_total", done.usage.completion_tokens, route=route, target=target,
                     kind="completion")
        self.reg.inc("llmrouter_route_cost_usd_total", done.cost_usd, route=route, target=target, surface=surface)
        tenant = str(request.metadata.get("tenant") or "")
        if tenant:  # set by the server from an API key, never by a client
            self.reg.inc("llmrouter_tenant_answers_total", tenant=tenant, route=route)
            self.reg.inc("llmrouter_tenant_tokens_total", done.usage.prompt_tokens + done.usage.completion_tokens,
                         tenant=tenant)
            self.reg.inc("llmrouter_tenant_cost_usd_total", done.cost_usd, tenant=tenant)
        with self.reg.lock:
            self._answers[response_id] = (route, target, surface)
            while len(self._answers) > self.remember:
                self._answers.popitem(last=False)

    def error(self, route: str, request: Request | None, status: int) -> None:
        self.reg.inc("llmrouter_route_errors_total", route=route or "-", surface=self.surface(request), status=str(status))

    def feedback(self, response_id: str, score: float) -> tuple[str, str, str] | None:
        """Record a score (0..1) for an answer this server gave; None if the id is unknown."""
        with self.reg.lock:
            hit = self._answers.get(response_id)
        if hit is None:
            return None
        route, target, surface = hit
        self.reg.inc("llmrouter_route_feedback_total", route=route, target=target, surface=surface)
        self.reg.inc("llmrouter_route_feedback_score_sum", score, route=route, target=target, surface=surface)
        return hit

    def alert(self, event: dict[str, Any]) -> None:
        self.reg.inc("llmrouter_alerts_total", kind=str(event.get("kind")))

    def render(self, breakers: Mapping[str, CircuitBreaker], hedges: Mapping[str, int] | None = None) -> str:
        """Prometheus text: the gauges, the chains' hedge counts, then every counter and histogram."""
        out = ["# TYPE llmrouter_in_flight gauge", f"llmrouter_in_flight {self.in_flight}",
               "# TYPE llmrouter_circuit_state gauge"]
        out += [f'llmrouter_circuit_state{{target="{n}"}} {CIRCUIT[b.state]}' for n, b in sorted(breakers.items())]
        out += ["# TYPE llmrouter_hedges_total counter"]
        out += [f'llmrouter_hedges_total{{outcome="{k}"}} {(hedges or {}).get(k, 0)}' for k in ("sent", "won", "denied")]
        return "\n".join(out) + "\n" + self.reg.render()
