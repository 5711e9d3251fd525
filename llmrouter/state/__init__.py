"""State shared by every process and host that names the same `[state] url` (Redis or Valkey):
spend budgets, escalation windows, rate limits, stickiness and breaker state.

    link.py      the connection, and a circuit around it: Redis down -> local state, one warning
    windows.py   sliding windows (bucketed hashes, Lua) with a local mirror
    limits.py    the policy's escalation window and spend ledger, the key meter's rates, on windows
    totals.py    running totals (INCRBY): what each API key has spent
    sessions.py  session stickiness (SET PX)
    flags.py     a flag raised for some seconds: a target's open breaker
    shared.py    SharedState: one connection and the structures above, under one key prefix

Each structure has the interface of the local one it replaces, so the policy, the key meter and
the breakers take either. Needs the `redis` package (`pip install 'llmrouter[redis]'`).
"""

from llmrouter.state.shared import SharedState, connect

__all__ = ["SharedState", "connect"]
