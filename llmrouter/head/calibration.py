"""Calibration: turning scores into probabilities that mean what they say.

softmax / log_softmax are plain numpy (used when deciding); the fits use scipy (`llmrouter tune`).
"""

from __future__ import annotations

import numpy as np

from llmrouter.errors import need


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of `y` (a 1-d search)."""
    need("scipy", "tune", "fitting a temperature")
    from scipy.optimize import minimize_scalar

    logits, y = np.asarray(logits, dtype=np.float64), np.asarray(y)

    def nll(log_t: float) -> float:
        p = softmax(logits / np.exp(log_t))
        return -float(np.mean(np.log(p[np.arange(len(y)), y] + 1e-12)))

    res = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(res.x))


def fit_bias_temperature(
    logp: np.ndarray, y: np.ndarray, k: int, strength: float = 1.0
) -> tuple[np.ndarray, float]:
    """Per-route biases and a temperature for the model's log-probabilities (L2 on the biases).

    The bias undoes the model's prior for some route names (label-prior calibration); the
    temperature makes the confidence honest.
    """
    need("scipy", "tune", "calibrating the model's scores")
    from scipy.optimize import minimize

    logp, y = np.asarray(logp, dtype=np.float64), np.asarray(y)
    rows = np.arange(len(y))

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        b, log_t = theta[:k], theta[k]
        t = np.exp(log_t)
        z = (logp + b) / t
        p = softmax(z)
        nll = -np.mean(np.log(p[rows, y] + 1e-12))
        g = p.copy()
        g[rows, y] -= 1.0
        g /= len(y)
        grad_b = g.sum(axis=0) / t + 2 * strength * b / max(len(y), 1)
        grad_t = float(np.sum(g * (-z)))
        return float(nll + strength * np.sum(b * b) / max(len(y), 1)), np.append(grad_b, grad_t)

    res = minimize(loss, np.zeros(k + 1), jac=True, method="L-BFGS-B",
                   bounds=[(-20, 20)] * k + [(np.log(0.05), np.log(20.0))])
    return res.x[:k], float(np.exp(res.x[k]))
