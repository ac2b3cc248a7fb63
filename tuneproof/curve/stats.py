"""Intervals of a learning curve that count both sources of chance: which test rows were drawn and
which training subset was drawn.

A two-level bootstrap: each replicate resamples the test rows (the same rows for every point, from
:func:`tuneproof.evaluate.bootstrap.row_resamples`, so points are paired) and resamples the
repeats with replacement; the replicate's value is the mean over the drawn repeats of the metric on
the drawn rows. A point with one repeat (the full-data model) varies by test rows only. Two points
with the same number of repeats draw the same repeat numbers, so a method and TF-IDF at one size
(trained on the same subsets) are paired by subset too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tuneproof.evaluate.bootstrap import (
    Statistic,
    point_estimate,
    replicates_many,
    row_resamples,
    summarize,
    summarize_difference,
)
from tuneproof.evaluate.metrics import accuracy_stat, macro_stat


def metric_statistic(metric: str, y: np.ndarray, probs: np.ndarray) -> Statistic:
    k = probs.shape[1]
    pred = probs.argmax(1)
    if metric == "accuracy":
        return accuracy_stat(pred == y)
    if metric == "macro_f1":
        return macro_stat(y.astype(np.int64) * k + pred, k, "f1")
    raise ValueError(f"learning curve metric {metric!r} is not supported")


@dataclass
class PointReplicates:
    point: float
    reps: np.ndarray  # one value per bootstrap replicate
    per_repeat: list[float]  # the metric of each repeat on the whole test split


class CurveBootstrap:
    """Replicates of every point of a curve over shared test resamples and repeat draws."""

    def __init__(self, y: np.ndarray, samples: int, seed: int) -> None:
        self.y = y
        self.samples = samples
        self.seed = seed
        self.idx = row_resamples(len(y), samples, seed)
        self._draws: dict[int, np.ndarray] = {}

    def repeat_draws(self, repeats: int) -> np.ndarray:
        """``[samples, repeats]`` repeat numbers drawn with replacement, the same for every point
        with this many repeats."""
        if repeats not in self._draws:
            rng = np.random.default_rng([self.seed, 7919, repeats])
            self._draws[repeats] = rng.integers(0, repeats, size=(self.samples, repeats))
        return self._draws[repeats]

    def point(self, metric: str, probs_by_repeat: Sequence[np.ndarray]) -> PointReplicates:
        stats = [metric_statistic(metric, self.y, p) for p in probs_by_repeat]
        n = len(self.y)
        per_repeat = [point_estimate(s, n) for s in stats]
        many = replicates_many({str(i): s for i, s in enumerate(stats)}, self.idx)
        table = np.stack([many[str(i)] for i in range(len(stats))])  # [repeats, samples]
        draws = self.repeat_draws(len(stats))
        reps = table[draws, np.arange(self.samples)[:, None]].mean(axis=1)
        return PointReplicates(float(np.mean(per_repeat)), reps, per_repeat)


def summarize_point(p: PointReplicates, confidence: float) -> dict[str, Any]:
    out: dict[str, Any] = dict(summarize(p.point, p.reps, confidence))
    out["repeats"] = [round(v, 6) for v in p.per_repeat]
    return out


def difference(a: PointReplicates, b: PointReplicates, confidence: float) -> dict[str, float | None]:
    return summarize_difference(a.point, a.reps, b.point, b.reps, confidence)


def smallest_enough(
    sizes: Sequence[int], versus_full: Mapping[int, Mapping[str, float | None]], margin: float
) -> int | None:
    """The smallest size whose difference to the full-data model has its lower bound >= -margin."""
    for n in sorted(sizes):
        low = versus_full.get(n, {}).get("low")
        if low is not None and low >= -margin:
            return n
    return None


def beats_from(sizes: Sequence[int], versus_tfidf: Mapping[int, Mapping[str, float | None]]) -> int | None:
    """The smallest size from which the method beats TF-IDF with confidence at that size and at every
    larger one measured (lower bound of the paired difference above zero)."""
    measured = sorted(n for n in sizes if n in versus_tfidf)
    answer = None
    for n in reversed(measured):
        low = versus_tfidf[n].get("low")
        if low is None or low <= 0:
            break
        answer = n
    return answer
