"""Pure helpers of the benchmark: medians and ratios, steady-state rates, model FLOPs and MFU,
accuracy intervals, time-to-target. No torch import, so the parent process stays small and the
smoke test stays fast.

FLOPs convention (stated in docs/performance.md):
  training, per sequence of T real tokens:   6 * N * T  +  12 * L * d * T^2
  inference (forward only), per sequence:    2 * N * T  +   4 * L * d * T^2
where N counts the non-embedding parameters (matmul weights that every token passes through),
L the layers and d the hidden size. The T^2 term is self-attention (QK^T and AV, 2 * T^2 * d each
forward; backward twice the forward). Padding tokens are never counted: MFU here is real-token MFU.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any


def median(values: Iterable[float | None]) -> float | None:
    """Median of the values that were measured (None marks a failed repeat)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return statistics.median(xs) if xs else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either side is missing or the denominator is zero."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return float(numerator) / float(denominator)


def steady_rate(step_end_times: Sequence[float], step_units: Sequence[float], skip: int) -> float | None:
    """Units (tokens, samples) per second over steps ``skip+1 .. n``.

    The clock starts at the end of step ``skip`` (so ``skip >= 1``), which leaves out the first
    steps' one-time costs (oneDNN kernel creation, allocator warm-up, lazy imports) in every arm.
    """
    if skip < 1:
        raise ValueError("skip must be >= 1: the first step has no start timestamp")
    if len(step_end_times) != len(step_units):
        raise ValueError("one timestamp per step is needed")
    if len(step_end_times) <= skip:
        return None
    seconds = step_end_times[-1] - step_end_times[skip - 1]
    return float(sum(step_units[skip:])) / seconds if seconds > 0 else None


@dataclass(frozen=True)
class Shape:
    """What the FLOPs formula needs from a transformer."""

    non_embedding_params: int
    layers: int
    hidden: int

    def as_dict(self) -> dict[str, int]:
        return {
            "non_embedding_params": self.non_embedding_params,
            "layers": self.layers,
            "hidden": self.hidden,
        }


def train_flops(shape: Shape, lengths: Iterable[int]) -> float:
    """Model FLOPs of one training pass (forward + backward) over sequences of these real lengths."""
    n, ld = shape.non_embedding_params, shape.layers * shape.hidden
    return float(sum(6.0 * n * t + 12.0 * ld * t * t for t in lengths))


def inference_flops(shape: Shape, lengths: Iterable[int]) -> float:
    """Model FLOPs of one forward pass over sequences of these real lengths."""
    n, ld = shape.non_embedding_params, shape.layers * shape.hidden
    return float(sum(2.0 * n * t + 4.0 * ld * t * t for t in lengths))


def mfu(flops: float, seconds: float, peak_gflops: float | None) -> float | None:
    """Achieved model FLOP/s as a fraction of the measured peak."""
    if not peak_gflops or seconds <= 0:
        return None
    return flops / seconds / (peak_gflops * 1e9)


def steady_flops_rate(
    step_end_times: Sequence[float], step_lengths: Sequence[Sequence[int]], skip: int, shape: Shape
) -> float | None:
    """Training model FLOP/s over steps ``skip+1 .. n`` (see :func:`steady_rate`)."""
    flops = [train_flops(shape, lens) for lens in step_lengths]
    return steady_rate(step_end_times, flops, skip)


def wilson_interval(accuracy: float, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (accuracy on n independent test rows)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = accuracy
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (centre - half, centre + half)


def time_to_target(
    trajectory: Sequence[dict[str, Any]], target: float, key: str = "accuracy"
) -> float | None:
    """Training seconds at the first evaluation point whose ``key`` reaches ``target``; None if never."""
    for point in trajectory:
        value = point.get(key)
        if value is not None and value >= target - 1e-12:
            return float(point["train_seconds"])
    return None


def mean_trajectory(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Point-by-point mean of several runs' evaluation trajectories on the same step grid.

    Accuracy and training seconds are averaged at each step; the result keeps only the steps that
    every run evaluated, so a run cut short never drags the mean.
    """
    if not runs:
        return []
    steps = [p["step"] for p in runs[0]["trajectory"]]
    common = [s for s in steps if all(any(p["step"] == s for p in r["trajectory"]) for r in runs)]
    out = []
    for s in common:
        points = [next(p for p in r["trajectory"] if p["step"] == s) for r in runs]
        out.append(
            {
                "step": s,
                "accuracy": sum(p["accuracy"] for p in points) / len(points),
                "train_seconds": sum(p["train_seconds"] for p in points) / len(points),
            }
        )
    return out


def paired_loss_difference(
    nll_a: Sequence[float],
    tokens_a: Sequence[int],
    nll_b: Sequence[float],
    tokens_b: Sequence[int],
    samples: int = 1000,
    seed: int = 13,
    confidence: float = 0.95,
) -> dict[str, float]:
    """Token-weighted loss of a minus loss of b on the same held-out examples, with a paired
    percentile-bootstrap interval (examples resampled, both models scored on each resample)."""
    import numpy as np

    na, ta = np.asarray(nll_a, float), np.asarray(tokens_a, float)
    nb, tb = np.asarray(nll_b, float), np.asarray(tokens_b, float)
    if not (len(na) == len(ta) == len(nb) == len(tb)) or len(na) == 0:
        raise ValueError("both models must be scored on the same, non-empty set of examples")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(na), size=(samples, len(na)))
    reps = na[idx].sum(1) / ta[idx].sum(1) - nb[idx].sum(1) / tb[idx].sum(1)
    alpha = (1 - confidence) / 2
    return {
        "loss_a": float(na.sum() / ta.sum()),
        "loss_b": float(nb.sum() / tb.sum()),
        "diff": float(na.sum() / ta.sum() - nb.sum() / tb.sum()),
        "low": float(np.quantile(reps, alpha)),
        "high": float(np.quantile(reps, 1 - alpha)),
    }


def paused_clock(t0: float, pauses: Sequence[tuple[float, float]]) -> Any:
    """A clock that reads seconds since ``t0`` minus every pause (start, end) that ended by then.

    Used to take evaluation passes and checkpoint writes out of a training run's wall clock.
    """
    spans = sorted(pauses)

    def clock(t: float) -> float:
        paused = sum(min(end, t) - start for start, end in spans if start < t)
        return t - t0 - paused

    return clock
