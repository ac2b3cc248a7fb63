"""Percentile bootstrap over resamples drawn once and shared by every statistic.

Hand-written rather than ``scipy.stats.bootstrap``: scipy draws fresh resamples on every call, so the
model, each baseline and their differences would each be judged on different rows, and a paired
comparison needs the *same* rows on both sides. It would also re-run every statistic once per
resample in Python. Here the index sets are drawn once (``bootstrap_indices``) and handed to every
statistic, which computes all resamples in one vectorised pass where it can; the paired difference
is then the difference of two replicate arrays computed on identical rows.

A *statistic* maps a block of index sets, shape ``[m, n]`` (each row one resample of row numbers),
to ``m`` values. It returns NaN for a resample on which it is undefined (ROC AUC with one class
absent); such resamples are skipped rather than counted, and the interval is taken over the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

import numpy as np

from tuneproof.evaluate.cluster_bootstrap import ClusterResamples
from tuneproof.evaluate.row_resamples import RowResamples

Statistic = Callable[[np.ndarray], np.ndarray]
# Row resamples as one [m, n] array, drawn block by block (tuneproof.evaluate.row_resamples), or
# cluster resamples (tuneproof.evaluate.cluster_bootstrap).
Resamples = np.ndarray | RowResamples | ClusterResamples

# Bounds the [m, n] temporaries a statistic builds (gathers, bincounts) to a few tens of MB.
_MAX_BLOCK_ELEMENTS = 4_000_000


def bootstrap_indices(n: int, samples: int, seed: int) -> np.ndarray:
    """``samples`` resamples of ``n`` row numbers drawn with replacement: an int array ``[samples, n]``.

    The whole matrix in memory; evaluations use ``row_resamples``, the same draw block by block.
    """
    return RowResamples(n, samples, seed).materialize()


def row_resamples(n: int, samples: int, seed: int) -> RowResamples:
    """The resamples of ``bootstrap_indices(n, samples, seed)``, drawn block by block when used."""
    return RowResamples(n, samples, seed)


def full_sample(n: int) -> np.ndarray:
    """The original sample as a single 'resample', so one statistic serves point and replicates."""
    return np.arange(n, dtype=np.int64)[None, :]


def per_resample(fn: Callable[[np.ndarray], float]) -> Statistic:
    """Lift a statistic of one index vector to a block of them, for statistics that do not vectorise."""

    def stat(idx: np.ndarray) -> np.ndarray:
        return np.array([fn(row) for row in idx], dtype=np.float64)

    return stat


def point_estimate(stat_fn: Statistic, n: int) -> float:
    return float(stat_fn(full_sample(n))[0])


def sample_size(idx: Resamples) -> int:
    """Rows of the sample the resamples were drawn from."""
    if isinstance(idx, ClusterResamples):
        return idx.rows
    return int(idx.shape[1])


def replicates(stat_fn: Statistic, idx: Resamples) -> np.ndarray:
    """The statistic on every resample, computed in row blocks so temporaries stay bounded."""
    return replicates_many({"_": stat_fn}, idx)["_"]


def _blocks(idx: np.ndarray | RowResamples) -> Iterator[np.ndarray]:
    step = max(1, _MAX_BLOCK_ELEMENTS // max(int(idx.shape[1]), 1))
    if isinstance(idx, RowResamples):
        yield from idx.blocks(step)
        return
    for start in range(0, idx.shape[0], step):
        yield idx[start : start + step]


def _cluster_replicates(stats: Mapping[str, Statistic], idx: ClusterResamples) -> dict[str, np.ndarray]:
    """As ``replicates_many`` for cluster resamples, drawn block by block (never all at once)."""
    out = {k: np.empty(idx.samples, dtype=np.float64) for k in stats}
    start = 0
    if idx.equal_lengths:
        # One length: a block stacks into one array, the same blocks the whole matrix was cut into.
        step = max(1, _MAX_BLOCK_ELEMENTS // max(idx.resample_rows, 1))
        for sets in idx.blocks(step):
            block = np.stack(sets)
            for k, f in stats.items():
                out[k][start : start + len(sets)] = f(block)
            start += len(sets)
        return out
    # Resamples of different lengths cannot share one array; each is one row of its own.
    step = max(1, _MAX_BLOCK_ELEMENTS // max(idx.rows, 1))
    for sets in idx.blocks(step):
        for i, s in enumerate(sets):
            for k, f in stats.items():
                out[k][start + i] = f(s[None, :])[0]
        start += len(sets)
    return out


def replicates_many(stats: Mapping[str, Statistic], idx: Resamples) -> dict[str, np.ndarray]:
    """Every statistic on every resample, all statistics on one block before the next is drawn.

    One pass over the resamples serves them all, so resamples drawn block by block
    (``RowResamples`` above its cache size) are drawn once per evaluation step, not once per statistic.
    """
    if isinstance(idx, ClusterResamples):
        return _cluster_replicates(stats, idx)
    out = {k: np.empty(idx.shape[0], dtype=np.float64) for k in stats}
    start = 0
    for block in _blocks(idx):
        for k, f in stats.items():
            out[k][start : start + block.shape[0]] = f(block)
        start += block.shape[0]
    return out


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Equal-tailed percentile interval over the finite replicates; NaN bounds if there are none."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(finite, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return float(low), float(high)


def _json_float(x: float) -> float | None:
    # metrics.json must stay strict JSON, which has no NaN: an undefined value is null.
    return float(x) if np.isfinite(x) else None


def summarize(point: float, reps: np.ndarray, confidence: float) -> dict[str, float | None]:
    """``{"value", "low", "high"}`` from a point estimate and its replicates."""
    low, high = percentile_interval(reps, confidence)
    return {"value": _json_float(point), "low": _json_float(low), "high": _json_float(high)}


def summarize_difference(
    point_a: float, reps_a: np.ndarray, point_b: float, reps_b: np.ndarray, confidence: float
) -> dict[str, float | None]:
    """``{"diff", "low", "high"}`` of a minus b; both replicate arrays must come from the same resamples."""
    if reps_a.shape != reps_b.shape:
        raise ValueError("paired replicates must come from the same resamples")
    low, high = percentile_interval(reps_a - reps_b, confidence)  # NaN on either side drops the resample
    return {"diff": _json_float(point_a - point_b), "low": _json_float(low), "high": _json_float(high)}


def interval(stat_fn: Statistic, idx: Resamples, confidence: float) -> tuple[float, float]:
    """Percentile interval of ``stat_fn`` over the resamples ``idx``."""
    return percentile_interval(replicates(stat_fn, idx), confidence)


def estimate(stat_fn: Statistic, idx: Resamples, confidence: float) -> dict[str, float | None]:
    """Point estimate on the full sample plus its percentile interval over ``idx``."""
    return summarize(point_estimate(stat_fn, sample_size(idx)), replicates(stat_fn, idx), confidence)


def paired_difference(
    stat_fn_a: Statistic, stat_fn_b: Statistic, idx: Resamples, confidence: float
) -> dict[str, float | None]:
    """Paired bootstrap difference a minus b: both statistics see the same resamples."""
    n = sample_size(idx)
    reps = replicates_many({"a": stat_fn_a, "b": stat_fn_b}, idx)
    return summarize_difference(
        point_estimate(stat_fn_a, n), reps["a"], point_estimate(stat_fn_b, n), reps["b"], confidence
    )
