"""Row masks that name the subsets of the test split metrics are broken down by."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

MISSING = "(missing)"


def length_slices(texts: Sequence[str], edges: Sequence[int]) -> dict[str, np.ndarray]:
    """Masks by whitespace word count. Edges ``[10, 25]`` give ``length < 10``, ``10 <= length < 25``
    and ``length >= 25``. Empty slices are kept here; the evaluation skips them."""
    if not edges or any(b <= a for a, b in itertools.pairwise(edges)):
        raise ValueError("edges must be a non-empty, strictly increasing list")
    words = np.array([len(str(t).split()) for t in texts], dtype=np.int64)
    out = {f"length < {edges[0]}": words < edges[0]}
    for low, high in itertools.pairwise(edges):
        out[f"{low} <= length < {high}"] = (words >= low) & (words < high)
    out[f"length >= {edges[-1]}"] = words >= edges[-1]
    return out


def _is_missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def column_slices(values: Sequence[object], column: str | None = None) -> dict[str, np.ndarray]:
    """One mask per distinct value, named ``column = value`` (or just ``value``), sorted by name.

    None and NaN share one slice named ``(missing)`` so rows without metadata are still accounted for.
    """
    keys = [MISSING if _is_missing(v) else str(v) for v in values]
    arr = np.array(keys, dtype=object)
    prefix = f"{column} = " if column else ""
    return {f"{prefix}{key}": arr == key for key in sorted(set(keys))}
