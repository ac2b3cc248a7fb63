"""Point estimates, intervals and paired differences for a named set of statistics.

The non-classification tasks all score "the model and each baseline on the same resamples, then
model minus baseline"; this keeps that pairing in one place so each task only defines statistics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tuneproof.evaluate.bootstrap import (
    Resamples,
    Statistic,
    full_sample,
    replicates_many,
    sample_size,
    summarize,
    summarize_difference,
)
from tuneproof.evaluate.slices import column_slices, length_slices
from tuneproof.protocol.schema import EvaluateSpec

Replicates = dict[str, tuple[float, np.ndarray]]


def score(
    stats: Mapping[str, Statistic], idx: Resamples, confidence: float
) -> tuple[dict[str, Any], Replicates]:
    """``{name: {"value", "low", "high"}}`` and the raw (point, replicates) kept for comparisons."""
    n = sample_size(idx)
    many = replicates_many(stats, idx)
    reps: Replicates = {name: (float(stat(full_sample(n))[0]), many[name]) for name, stat in stats.items()}
    return {name: summarize(p, r, confidence) for name, (p, r) in reps.items()}, reps


def compare(a: Replicates, b: Replicates, names: Sequence[str], confidence: float) -> dict[str, Any]:
    """Paired differences a minus b for ``names``; both must come from the same index sets."""
    return {m: summarize_difference(a[m][0], a[m][1], b[m][0], b[m][1], confidence) for m in names}


def slice_masks(
    spec: EvaluateSpec, texts: Sequence[str], columns: Mapping[str, Sequence[Any]]
) -> dict[str, np.ndarray]:
    """The protocol's slices as boolean masks over the test rows (length counts whitespace words)."""
    out: dict[str, np.ndarray] = {}
    for s in spec.slices:
        if s.by == "length":
            out.update(length_slices(list(texts), s.edges))
        else:
            out.update(column_slices(list(columns[s.column]), s.column))
    return out


def slice_rows(masks: Mapping[str, np.ndarray], n: int) -> list[tuple[str, np.ndarray]]:
    """Non-empty slices as (name, row numbers), checked to be masks over the ``n`` test rows."""
    out = []
    for name, mask in masks.items():
        mask = np.asarray(mask)
        if mask.dtype != np.bool_ or mask.shape != (n,):
            raise ValueError(
                f"slice {name!r}: expected a boolean mask of shape ({n},), got {mask.dtype} {mask.shape}"
            )
        if mask.any():
            out.append((name, np.flatnonzero(mask)))
    return out


def json_float(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None
