"""One answer per request from a route's targets, surviving the ones that fail: deadlines,
retries, Retry-After, circuit breakers, hedging, health and the streaming rules, in one place.

The rules, in the order they apply to each request:
- Targets are tried in the route's order, each at most once per request (a target listed twice,
  or a cyclic config, gives a "listed twice" skip, never a second visit).
- One total deadline covers every retry, backoff and fallback; each attempt also stops at the
  target's `timeout_s`. A stream's deadline covers reaching its first content token; after that
  an idle-stall timeout guards every chunk.
- Only failures where the same target may answer if asked again are retried on it, up to its own
  `max_retries` (else [fallback]'s), with jittered backoff, or after Retry-After when the target
  gives one (up to a cap, else the next target gets the request): connect errors, broken
  connections, 408, 429 and 5xx. A timed-out attempt
  is not retried on the same target: it may still be running there (a second bill) and the
  deadline is better spent on the next target.
- A deterministic 4xx (400, 422) ends the request with that error. A context-length error sends
  the request on only to targets with a larger context window. Other 4xx (401, 403, 404: a key
  or model problem of that target) move on to the next target.
- Each target has a circuit breaker, shared by all requests: after `breaker_failures` failures
  in a row it opens and the target is skipped; after `breaker_cooldown_s` one request probes it
  (half-open) and closes it again on success. When every target of a route is open, the request
  fails at once with a 503 whose retry_after says when the first probe is due.
- A stream that fails before its first content token falls back like any other attempt; with
  `first_token_timeout_s`, a silent target hands over at once and is not retried on itself.
- Once content has been sent, a failure (cut, stall, malformed chunk, an end without finish)
  continues the answer on the next untried target that accepts an assistant prefill: the
  conversation plus the text sent so far, only the continuation streamed on; like the start,
  it has the request's deadline to reach its first content token. A target that
  refuses the prefill is passed over; when none can continue, the stream ends with an error
  naming the original failure, never a truncated success (continuation.py).
- Hedging (opt-in, non-streamed): past `hedge_after_ms` without an answer, a second walk of the
  same targets starts at the next one; the first answer wins and the other is cancelled. A token
  bucket keeps hedges to `hedge_budget` of requests (hedge.py).
- Health-aware ordering (opt-in): targets with a bad recent error rate or latency are tried after
  the healthy ones, before their breaker would open (health.py).
This package is the only retry layer: providers and their HTTP client never retry.
"""


from llmrouter.fallback.attempts import safe_log, summarize_attempts
from llmrouter.fallback.breaker import CircuitBreaker
from llmrouter.fallback.chain import FallbackChain
from llmrouter.fallback.stream import ChainStream

__all__ = ["ChainStream", "CircuitBreaker", "FallbackChain", "safe_log", "summarize_attempts"]
