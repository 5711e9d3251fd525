"""The fitted head: a light model over the router model's own hidden states (made by `llmrouter
tune`, read by the llama decider), and what it is made of.

    fitted.py       FittedHead (save/load as .npz, check, decide), Observation, stack
    members.py      its members: Dense (logistic over hidden-state blocks), Chars (character n-grams)
    calibration.py  softmax, and fitting temperatures and per-route biases
    cheap.py        CheapStage: the cascade's first stage, a route from the text alone
    claims.py       ContentView: a request without what it says about itself (its difficulty,
                    its route, instructions to the router, chat markup)
"""

from llmrouter.head.cheap import CheapStage
from llmrouter.head.fitted import FittedHead, Observation, stack

__all__ = ["CheapStage", "FittedHead", "Observation", "stack"]
