"""Nested, stratified subsets of the training split: for each repeat, one random order per class,
and the subset of size n takes the first n rows of every class in that order, so each subset
contains every smaller one of the same repeat (a larger point only ever adds labels)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def class_orders(labels: Sequence[int] | np.ndarray, repeat: int, seed: int) -> dict[int, np.ndarray]:
    """Each class's row positions in the random order of this repeat."""
    y = np.asarray(labels)
    rng = np.random.default_rng([seed, repeat])
    return {int(c): rng.permutation(np.flatnonzero(y == c)) for c in np.unique(y)}


def nested_subset(orders: dict[int, np.ndarray], per_class: int) -> np.ndarray:
    """Row positions of the first ``per_class`` rows of every class (all of a smaller class), sorted."""
    picked = [order[:per_class] for _, order in sorted(orders.items())]
    return np.sort(np.concatenate(picked))


def per_class_counts(labels: Sequence[int] | np.ndarray, rows: np.ndarray) -> dict[int, int]:
    y = np.asarray(labels)[rows]
    return {int(c): int((y == c).sum()) for c in np.unique(y)}
