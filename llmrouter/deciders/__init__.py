"""Ways to decide a route; each kind is an entry in llmrouter.registry.DECIDERS.

    base.py    the Decider protocol, and build_decider (from the registry)
    llama.py   in-process llama.cpp on a warm prefix: scored routes, a fitted head, Outlines JSON
    remote.py  the same prompt and route enum sent to a serving engine (llama.cpp server, vLLM)
"""

from llmrouter.deciders.base import Decider, build_decider

__all__ = ["Decider", "build_decider"]
