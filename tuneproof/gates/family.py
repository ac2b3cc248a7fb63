"""Gates judged as a family: Holm or Bonferroni, so that "all gates passed" holds at the stated level.

Each gate is a test of "the model falls short of this threshold". Judged one by one at 95%, four
gates each risk a 5% (one-sided 2.5%) chance of passing a model that in truth falls short; a
family-wise correction bounds the chance that *any* of the passes is wrong by the same 5%, which is
what a reader of "all gates passed at 95%" takes it to mean.

A gate's p-value comes from the same bootstrap replicates as its interval, so that at one gate the
family decision equals the interval decision: the percentile interval at level ``1 - a`` clears the
threshold exactly when at most ``a / 2`` of the replicates fall on the failing side, so
``p = 2 x (share of replicates on the failing side)``, capped at 1. A ``slice_min`` gate passes only
if every gated slice clears the floor (an intersection), so its p-value is the largest of its
slices'.

Holm's step-down is written here rather than imported: it is six lines, and statsmodels (which
has it) is a large dependency for that alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from tuneproof.evaluate.direction import lower_is_better
from tuneproof.protocol.schema import GateSpec

Method = Literal["individual", "holm", "bonferroni"]


def replicate_p(reps: np.ndarray, threshold: float, passes_above: bool) -> float | None:
    """Two-sided-interval p-value of "the statistic is on the failing side of ``threshold``"."""
    finite = reps[np.isfinite(reps)]
    if finite.size == 0:
        return None
    failing = finite < threshold if passes_above else finite > threshold
    return float(min(1.0, 2.0 * failing.mean()))


# A statistic's point estimate, replicates and jackknife values (None: percentile intervals).
Replicated = tuple[float, np.ndarray, np.ndarray | None]


def _p(r: Replicated, threshold: float, passes_above: bool) -> float | None:
    if r[2] is not None:
        from tuneproof.evaluate.bca import bca_p_value

        return bca_p_value(r[0], r[1], r[2], threshold, passes_above)
    return replicate_p(r[1], threshold, passes_above)


def gate_p_value(
    gate: GateSpec,
    model: Mapping[str, Replicated],
    differences: Mapping[str, Mapping[str, Replicated]],
    slices: Sequence[Mapping[str, np.ndarray]],
) -> float | None:
    """The gate's p-value from replicates: ``model[metric]``, ``differences[baseline][metric]``
    (model minus baseline on the same resamples) and, per gated slice, ``{metric: replicates}``;
    with jackknife values the p-value is the BCa interval's, so it agrees with the interval verdict.
    None when the gate has no replicates to test (an unknown metric, a per-class point estimate)."""
    if gate.min is not None or gate.max is not None:
        rep = model.get(gate.metric)
        if rep is None:
            return None
        threshold = gate.min if gate.min is not None else gate.max
        assert threshold is not None
        return _p(rep, threshold, gate.min is not None)
    if gate.beats is not None:
        diff = differences.get(gate.beats, {}).get(gate.metric)
        if diff is None:
            return None
        if lower_is_better(gate.metric):
            return _p(diff, -gate.by, passes_above=False)
        return _p(diff, gate.by, passes_above=True)
    assert gate.slice_min is not None
    ps = [replicate_p(s[gate.metric], gate.slice_min, True) for s in slices if gate.metric in s]
    if not ps or any(p is None for p in ps):
        return None
    return max(p for p in ps if p is not None)


def adjusted_alphas(p_values: Sequence[float | None], alpha: float, method: Method) -> list[float]:
    """The level each gate's p-value is compared with; a gate passes when ``p <= level``.

    Bonferroni: ``alpha / m`` for all. Holm: sort the p-values; the i-th smallest (from 0) is compared
    with ``alpha / (m - i)``, and once one fails, every larger one fails too (its level is then 0).
    A gate without a p-value counts in ``m`` (it is one of the claims) and never passes here.
    """
    m = len(p_values)
    if method == "individual":
        return [alpha] * m
    if method == "bonferroni":
        return [alpha / m] * m
    order = sorted(range(m), key=lambda i: (p_values[i] is None, p_values[i] or 0.0))
    levels = [0.0] * m
    for rank, i in enumerate(order):
        level = alpha / (m - rank)
        p = p_values[i]
        if p is None or p > level:
            break  # step-down: this and every gate after it are not rejected
        levels[i] = level
    else:
        return levels
    # Gates after the first failure keep level 0 (never pass); the failing one shows its own level.
    levels[i] = alpha / (m - rank)
    return levels


def gate_tests(
    gates: Sequence[GateSpec],
    model: Mapping[str, Replicated],
    differences: Mapping[str, Mapping[str, Replicated]],
    slices: Sequence[Mapping[str, np.ndarray]],
) -> list[dict[str, Any]]:
    """``metrics.json``'s ``gate_tests``: each gate's bootstrap p-value, in protocol order."""
    return [{"gate": g.label, "p": gate_p_value(g, model, differences, slices)} for g in gates]
