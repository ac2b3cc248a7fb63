"""Bias-corrected and accelerated (BCa) bootstrap intervals on the shared resamples.

Efron's BCa moves the percentile interval's cut points to correct for a median bias of the
replicates (``z0``) and for a standard error that changes with the value (the acceleration ``a``,
from the jackknife). scipy.stats.bootstrap computes it, but draws its own resamples on every call,
which would break the pairing of model and baseline (see ``bootstrap``); the formula is applied
here to the replicates every statistic already shares, the same formula scipy uses
(``scipy.stats._resampling._bca_interval``).

The jackknife leaves out one *unit* at a time: a row, a cluster when the bootstrap resamples
clusters, or, above ``MAX_JACKKNIFE_UNITS`` rows, one of that many contiguous blocks (a grouped
jackknife: the acceleration is a ratio of moments and is estimated as well from blocks, at a
fraction of the cost).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

from tuneproof.evaluate.bootstrap import Statistic, percentile_interval

MAX_JACKKNIFE_UNITS = 500


def jackknife_units(n: int, codes: np.ndarray | None = None) -> list[np.ndarray]:
    """The units the jackknife leaves out, as row numbers: clusters, rows, or blocks of rows."""
    if codes is not None:
        order = np.argsort(codes, kind="stable")
        _, starts = np.unique(codes[order], return_index=True)
        return list(np.split(order, starts[1:]))
    return list(np.array_split(np.arange(n), min(n, MAX_JACKKNIFE_UNITS)))


def jackknife(stat: Statistic, n: int, units: list[np.ndarray]) -> np.ndarray:
    """The statistic with each unit left out in turn."""
    keep = np.ones(n, dtype=bool)
    out = np.empty(len(units), dtype=np.float64)
    for i, unit in enumerate(units):
        keep[unit] = False
        out[i] = stat(np.flatnonzero(keep)[None, :])[0]
        keep[unit] = True
    return out


def _bias_and_acceleration(point: float, finite: np.ndarray, jack: np.ndarray) -> tuple[float, float] | None:
    """``(z0, a)``, or None where BCa is undefined: every replicate on one side of the point."""
    jack = jack[np.isfinite(jack)]
    share = (np.sum(finite < point) + 0.5 * np.sum(finite == point)) / finite.size
    if not 0.0 < share < 1.0 or jack.size < 2:
        return None
    dev = jack.mean() - jack
    denom = float(np.sum(dev**2)) ** 1.5
    a = float(np.sum(dev**3)) / (6.0 * denom) if denom > 0 else 0.0
    return float(norm.ppf(share)), a


def bca_interval(point: float, reps: np.ndarray, jack: np.ndarray, confidence: float) -> tuple[float, float]:
    """BCa bounds from the point estimate, its replicates and its jackknife values.

    Falls back to the percentile interval where BCa is undefined: all replicates on one side of
    the point (``z0`` infinite); a jackknife without spread gives acceleration 0 (bias correction only).
    """
    finite = reps[np.isfinite(reps)]
    if finite.size == 0 or not np.isfinite(point):
        return float("nan"), float("nan")
    za = _bias_and_acceleration(point, finite, jack)
    if za is None:
        return percentile_interval(finite, confidence)
    z0, a = za
    alpha = (1.0 - confidence) / 2.0
    cuts = []
    for q in (alpha, 1.0 - alpha):
        z = z0 + float(norm.ppf(q))
        cuts.append(float(norm.cdf(z0 + z / (1.0 - a * z))))
    low, high = np.percentile(finite, [100.0 * cuts[0], 100.0 * cuts[1]])
    return float(low), float(high)


def bca_p_value(
    point: float, reps: np.ndarray, jack: np.ndarray, threshold: float, passes_above: bool
) -> float | None:
    """The smallest ``1 - confidence`` at which the BCa bound clears ``threshold`` (the BCa
    counterpart of ``gates.family.replicate_p``): the BCa cut point inverted in closed form."""
    finite = reps[np.isfinite(reps)]
    if finite.size == 0 or not np.isfinite(point):
        return None
    share = float(np.mean(finite < threshold))
    za = _bias_and_acceleration(point, finite, jack)
    if za is None or not 0.0 < share < 1.0:
        failing = share if passes_above else 1.0 - share
        return float(min(1.0, 2.0 * failing))
    z0, a = za
    d = float(norm.ppf(share)) - z0
    w = d / (1.0 + a * d)
    tail = float(norm.cdf(w - z0)) if passes_above else 1.0 - float(norm.cdf(w - z0))
    return float(min(1.0, 2.0 * tail))


def _json_float(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def summarize_bca(
    point: float, reps: np.ndarray, jack: np.ndarray, confidence: float
) -> dict[str, float | None]:
    """``{"value", "low", "high"}`` with BCa bounds (``bootstrap.summarize`` with percentile ones)."""
    low, high = bca_interval(point, reps, jack, confidence)
    return {"value": _json_float(point), "low": _json_float(low), "high": _json_float(high)}


def summarize_bca_difference(
    a: tuple[float, np.ndarray, np.ndarray], b: tuple[float, np.ndarray, np.ndarray], confidence: float
) -> dict[str, float | None]:
    """``{"diff", "low", "high"}`` of a minus b: same resamples and same jackknife units on both sides."""
    diff = a[0] - b[0]
    low, high = bca_interval(diff, a[1] - b[1], a[2] - b[2], confidence)
    return {"diff": _json_float(diff), "low": _json_float(low), "high": _json_float(high)}
