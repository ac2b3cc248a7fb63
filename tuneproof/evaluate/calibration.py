"""Temperature scaling (Guo et al., 2017): one scalar that divides the logits, fitted on validation.

It changes no prediction (the arg-max of ``logits / T`` is the arg-max of the logits), only how
confident the probabilities are, so accuracy and F1 are untouched and calibration (ECE, log loss)
can only be judged on data it was not fitted on: it is fitted on the validation split, never the
test split, and the evaluation reports the test split before and after.

The models hand over softmax probabilities, not logits; ``log p`` differs from the logits by a
per-row constant, which the softmax removes, so scaling ``log p`` is scaling the logits.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

# log T is searched in [-LOG_T_BOUND, LOG_T_BOUND]: T between 1/20 and 20 covers any softmax model
# worth shipping, and a bounded search cannot run off to a degenerate 0 or infinity.
LOG_T_BOUND = 3.0
# float32 softmax outputs can hold exact zeros; their log is floored here, a finite "very unlikely".
_MIN_PROB = 1e-12


def _log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), _MIN_PROB, 1.0))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """The probabilities of ``logits / temperature``, from the probabilities of ``logits``."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return np.asarray(softmax(_log_probs(probs) / temperature, axis=1))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature that minimises the negative log likelihood of ``labels`` (validation split)."""
    y = np.asarray(labels, dtype=np.int64)
    logp = _log_probs(probs)
    if logp.ndim != 2 or logp.shape[0] != y.size or y.size == 0:
        raise ValueError(f"need one row of probabilities per label, got {logp.shape} for {y.size} labels")
    rows = np.arange(y.size)

    def nll(log_t: float) -> float:
        return float(-log_softmax(logp / np.exp(log_t), axis=1)[rows, y].mean())

    res = minimize_scalar(nll, bounds=(-LOG_T_BOUND, LOG_T_BOUND), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(res.x))
