"""Test tooling, for llmrouter's tests and yours (not imported by the runtime).

    emulator.py  a fake OpenAI/Anthropic provider on a real socket, scriptable to fail
                 (python -m llmrouter.testing.emulator --port 9000)
    fakes.py     emulated fleets, FakeRouter (no model), FixedDecider
"""

from llmrouter.testing.emulator import Behavior, Emulator
from llmrouter.testing.fakes import FakeRouter, FixedDecider, fleet

__all__ = ["Behavior", "Emulator", "FakeRouter", "FixedDecider", "fleet"]
