"""Test-split evaluation of a scorer against baselines: the regression ``metrics.json`` layout.

Every statistic runs on a whole block of resamples at once. R² is taken on each resample's own
mean, and Spearman re-ranks each resample (ties from repeated rows get average ranks), so both are
the statistic of the resampled test set, as ``r2_score`` and ``spearmanr`` would compute it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from tuneproof.evaluate.bootstrap import Statistic, row_resamples
from tuneproof.evaluate.intervals import compare, json_float, score, slice_rows
from tuneproof.protocol.schema import EvaluateSpec

SCALAR_METRICS = ("mae", "rmse", "r2", "spearman")
SLICE_METRICS = ("mae", "rmse")
RESIDUAL_BINS = 5


def regression_metric_names() -> list[str]:
    return list(SCALAR_METRICS)


def mae_stat(err: np.ndarray) -> Statistic:
    a = np.abs(err)
    return lambda idx: a[idx].mean(axis=1)


def rmse_stat(err: np.ndarray) -> Statistic:
    sq = err**2
    return lambda idx: np.sqrt(sq[idx].mean(axis=1))


def r2_stat(y: np.ndarray, pred: np.ndarray) -> Statistic:
    sq = (y - pred) ** 2

    def stat(idx: np.ndarray) -> np.ndarray:
        yy = y[idx]
        sst = ((yy - yy.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            # A resample whose targets are all equal has no variance to explain: R² is undefined.
            return np.where(sst > 0, 1.0 - sq[idx].sum(axis=1) / sst, np.nan)

    return stat


def spearman_stat(y: np.ndarray, pred: np.ndarray) -> Statistic:
    from scipy.stats import rankdata

    def stat(idx: np.ndarray) -> np.ndarray:
        ry = rankdata(y[idx], axis=1)
        rp = rankdata(pred[idx], axis=1)
        ry -= ry.mean(axis=1, keepdims=True)
        rp -= rp.mean(axis=1, keepdims=True)
        den = np.sqrt((ry**2).sum(axis=1) * (rp**2).sum(axis=1))
        with np.errstate(divide="ignore", invalid="ignore"):
            # A constant prediction (the mean baseline) has no ranking: undefined, reported as null.
            return np.where(den > 0, (ry * rp).sum(axis=1) / den, np.nan)

    return stat


def _stats(y: np.ndarray, pred: np.ndarray) -> dict[str, Statistic]:
    err = pred - y
    return {
        "mae": mae_stat(err),
        "rmse": rmse_stat(err),
        "r2": r2_stat(y, pred),
        "spearman": spearman_stat(y, pred),
    }


def _check(name: str, pred: np.ndarray, n: int) -> np.ndarray:
    pred = np.asarray(pred, dtype=np.float64)
    if pred.shape != (n,):
        raise ValueError(f"{name}: predictions have shape {pred.shape}, expected ({n},)")
    if not np.all(np.isfinite(pred)):
        raise ValueError(f"{name}: predictions must be finite")
    return pred


def residual_bins(y: np.ndarray, pred: np.ndarray, bins: int = RESIDUAL_BINS) -> list[dict[str, Any]]:
    """Test rows in quantile bins of the true value: where along the scale the model errs, and which way."""
    edges = np.unique(np.quantile(y, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, y, side="right") - 1, 0, max(len(edges) - 2, 0))
    out = []
    for b in range(max(len(edges) - 1, 1)):
        mask = which == b
        if not mask.any():
            continue
        err = pred[mask] - y[mask]
        out.append(
            {
                "low": float(edges[b]),
                "high": float(edges[min(b + 1, len(edges) - 1)]),
                "n": int(mask.sum()),
                "mean_true": float(y[mask].mean()),
                "mean_pred": float(pred[mask].mean()),
                "bias": float(err.mean()),
                "mae": float(np.abs(err).mean()),
            }
        )
    return out


def evaluate_regression(
    y_true: np.ndarray,
    pred: np.ndarray,
    baselines: Mapping[str, np.ndarray],
    spec: EvaluateSpec,
    seed: int,
    slices: Mapping[str, np.ndarray] | None = None,
    validation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """MAE, RMSE, R² and Spearman with intervals for the model and each baseline, and paired
    differences model minus baseline. Row ``i`` of every array must be the same test example."""
    y = np.asarray(y_true, dtype=np.float64)
    n = y.size
    if y.ndim != 1 or n == 0:
        raise ValueError("y_true must be a non-empty 1-D array")
    if not np.all(np.isfinite(y)):
        raise ValueError("y_true must be finite")
    model_pred = _check("model", pred, n)
    idx = row_resamples(n, spec.bootstrap_samples, seed)
    model, model_reps = score(_stats(y, model_pred), idx, spec.confidence)
    baseline_blocks: dict[str, Any] = {}
    comparisons: dict[str, Any] = {}
    for name, base in baselines.items():
        block, reps = score(_stats(y, _check(f"baseline {name!r}", base, n)), idx, spec.confidence)
        baseline_blocks[name] = block
        comparisons[name] = compare(model_reps, reps, SCALAR_METRICS, spec.confidence)
    err = model_pred - y
    out_slices = []
    for name, rows in slice_rows(slices or {}, n):
        r = rows[None, :]
        metrics = {
            "mae": json_float(float(mae_stat(err)(r)[0])),
            "rmse": json_float(float(rmse_stat(err)(r)[0])),
        }
        out_slices.append({"name": name, "n": int(rows.size), "metrics": metrics})
    return {
        "task": "regression",
        "split": "test",
        "n": n,
        "confidence": spec.confidence,
        "bootstrap_samples": spec.bootstrap_samples,
        "target": {
            "mean": float(y.mean()),
            "std": float(y.std()),
            "min": float(y.min()),
            "max": float(y.max()),
        },
        "model": model,
        "baselines": baseline_blocks,
        "comparisons": comparisons,
        "residuals": {"bins": residual_bins(y, model_pred)},
        "slices": out_slices,
        "validation": validation,
    }


__all__ = [
    "SCALAR_METRICS",
    "SLICE_METRICS",
    "evaluate_regression",
    "regression_metric_names",
    "residual_bins",
]
