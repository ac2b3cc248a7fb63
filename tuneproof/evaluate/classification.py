"""Test-split evaluation of a classifier against baselines: the ``metrics.json`` classification layout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tuneproof.evaluate.bootstrap import (
    Statistic,
    bootstrap_indices,
    full_sample,
    replicates,
    summarize,
    summarize_difference,
)
from tuneproof.evaluate.metrics import (
    accuracy_stat,
    confidence_bins,
    confusion_blocks,
    ece_stat,
    macro_from_confusion,
    macro_stat,
    mean_stat,
    per_class_scores,
    roc_auc_stat,
    row_log_loss,
)
from tuneproof.evaluate.slices import column_slices, length_slices
from tuneproof.protocol.schema import EvaluateSpec

__all__ = [
    "PER_CLASS_STATS",
    "SCALAR_METRICS",
    "SLICE_METRICS",
    "classification_metric_names",
    "column_slices",
    "evaluate_classification",
    "length_slices",
]

SCALAR_METRICS = ("accuracy", "macro_f1", "macro_precision", "macro_recall", "roc_auc", "ece", "log_loss")
SLICE_METRICS = ("accuracy", "macro_f1")
PER_CLASS_STATS = ("precision", "recall", "f1", "support")

# Probabilities from a softmax sum to 1 up to float error; a bigger gap means logits or a bug upstream.
_ROW_SUM_TOLERANCE = 1e-3


def classification_metric_names(labels: Sequence[str] | None = None) -> list[str]:
    """Every metric name a gate may use. Without labels, per-class names are patterns (``*``)."""
    names = list(SCALAR_METRICS)
    for label in labels if labels is not None else ["*"]:
        names += [f"per_class.{label}.{s}" for s in PER_CLASS_STATS]
    return names


def _check_probs(name: str, probs: np.ndarray, n: int, k: int) -> np.ndarray:
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape != (n, k):
        raise ValueError(f"{name}: probabilities have shape {probs.shape}, expected ({n}, {k})")
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise ValueError(f"{name}: probabilities must be finite and non-negative")
    worst = float(np.max(np.abs(probs.sum(axis=1) - 1.0))) if n else 0.0
    if worst > _ROW_SUM_TOLERANCE:
        raise ValueError(
            f"{name}: rows must sum to 1 (off by up to {worst:.3g}); pass softmax output, not logits"
        )
    return probs


class _Scored:
    """One model's predictions turned into the per-row quantities every statistic draws from."""

    def __init__(self, y: np.ndarray, probs: np.ndarray, bins: int) -> None:
        k = probs.shape[1]
        self.pred = probs.argmax(axis=1)  # ties go to the lowest label id, deterministically
        self.correct = (self.pred == y).astype(np.float64)
        self.confidence = probs.max(axis=1)
        self.codes = y.astype(np.int64) * k + self.pred
        self.stats: dict[str, Statistic] = {
            "accuracy": accuracy_stat(self.correct),
            "macro_f1": macro_stat(self.codes, k, "f1"),
            "macro_precision": macro_stat(self.codes, k, "precision"),
            "macro_recall": macro_stat(self.codes, k, "recall"),
            "roc_auc": roc_auc_stat(y, probs),
            "ece": ece_stat(self.confidence, self.correct, bins),
            "log_loss": mean_stat(row_log_loss(y, probs)),
        }


def _point_and_replicates(
    scored: _Scored, idx: np.ndarray, auc_defined: bool
) -> dict[str, tuple[float, np.ndarray] | None]:
    n = idx.shape[1]
    out: dict[str, tuple[float, np.ndarray] | None] = {}
    for name, stat in scored.stats.items():
        if name == "roc_auc" and not auc_defined:
            out[name] = None  # a class absent from the test labels: AUC has no meaning, report null
            continue
        out[name] = (float(stat(full_sample(n))[0]), replicates(stat, idx))
    return out


def _model_block(
    scored: _Scored,
    reps: Mapping[str, tuple[float, np.ndarray] | None],
    labels: Sequence[str],
    confidence: float,
) -> dict[str, Any]:
    k = len(labels)
    block: dict[str, Any] = {
        name: None if r is None else summarize(r[0], r[1], confidence) for name, r in reps.items()
    }
    cm = confusion_blocks(scored.codes, full_sample(scored.codes.size), k)[0]
    scores = per_class_scores(cm)
    block["per_class"] = {
        label: {
            "precision": float(scores["precision"][i]),
            "recall": float(scores["recall"][i]),
            "f1": float(scores["f1"][i]),
            "support": int(scores["support"][i]),
        }
        for i, label in enumerate(labels)
    }
    block["confusion_matrix"] = cm.astype(int).tolist()
    return block


def _compare(
    a: tuple[float, np.ndarray] | None, b: tuple[float, np.ndarray] | None, confidence: float
) -> dict[str, float | None] | None:
    if a is None or b is None:
        return None  # undefined on one side (AUC with a class absent) means no comparison
    return summarize_difference(a[0], a[1], b[0], b[1], confidence)


def _calibration(scored: _Scored, bins: int) -> dict[str, Any]:
    bin_of = confidence_bins(scored.confidence, bins)
    out = []
    for b in range(bins):
        mask = bin_of == b
        count = int(mask.sum())
        if count == 0:
            continue  # an empty bin has no confidence or accuracy to plot
        out.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "count": count,
                "confidence": float(scored.confidence[mask].mean()),
                "accuracy": float(scored.correct[mask].mean()),
            }
        )
    return {"bins": out}


def _slices(scored: _Scored, slices: Mapping[str, np.ndarray] | None, n: int, k: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, mask in (slices or {}).items():
        mask = np.asarray(mask)
        if mask.dtype != np.bool_ or mask.shape != (n,):
            raise ValueError(
                f"slice {name!r}: expected a boolean mask of shape ({n},), got {mask.dtype} {mask.shape}"
            )
        size = int(mask.sum())
        if size == 0:
            continue
        rows = np.flatnonzero(mask)[None, :]
        cm = confusion_blocks(scored.codes, rows, k)
        metrics = {
            "accuracy": float(scored.correct[mask].mean()),
            "macro_f1": float(macro_from_confusion(cm, "f1")[0]),
        }
        out.append({"name": name, "n": size, "metrics": metrics})
    return out


def evaluate_classification(
    y_true: np.ndarray,
    probs: np.ndarray,
    baselines: Mapping[str, np.ndarray],
    labels: Sequence[str],
    spec: EvaluateSpec,
    seed: int,
    slices: Mapping[str, np.ndarray] | None = None,
    validation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics with percentile-bootstrap intervals for the model and each baseline, and paired
    differences model minus baseline, in the ``metrics.json`` classification layout.

    Alignment is the caller's job: row ``i`` of ``y_true``, ``probs``, every baseline's array and every
    slice mask must all describe the same test example, and column ``j`` of every probability array
    the label ``labels[j]`` (label id ``j``). Nothing here can detect rows that were shuffled or
    re-ordered by one side only; join predictions to labels on ``row_id`` before calling.

    Every interval and difference uses the same ``spec.bootstrap_samples`` resamples (drawn once from
    ``seed``), which is what makes the comparisons paired. For ``ece`` and ``log_loss`` lower is better;
    the comparison is still model minus baseline, and the gates know the direction.
    """
    y = np.asarray(y_true)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError("y_true must be a 1-D array of integer label ids")
    n, k = y.size, len(labels)
    if n == 0:
        raise ValueError("cannot evaluate on an empty test split")
    if k < 2:
        raise ValueError("classification needs at least two labels")
    if y.min() < 0 or y.max() >= k:
        raise ValueError(f"y_true holds label ids outside 0..{k - 1}")
    bins, confidence = spec.calibration_bins, spec.confidence
    # AUC is undefined when some class never occurs in the labels: every pairing needs both sides.
    auc_defined = bool(np.all(np.bincount(y, minlength=k) > 0))

    idx = bootstrap_indices(n, spec.bootstrap_samples, seed)
    model = _Scored(y, _check_probs("model", probs, n, k), bins)
    model_reps = _point_and_replicates(model, idx, auc_defined)

    baseline_blocks: dict[str, Any] = {}
    comparisons: dict[str, Any] = {}
    for name, base_probs in baselines.items():
        base = _Scored(y, _check_probs(f"baseline {name!r}", base_probs, n, k), bins)
        base_reps = _point_and_replicates(base, idx, auc_defined)
        baseline_blocks[name] = _model_block(base, base_reps, labels, confidence)
        comparisons[name] = {m: _compare(model_reps[m], base_reps[m], confidence) for m in SCALAR_METRICS}

    return {
        "task": "classification",
        "split": "test",
        "n": n,
        "labels": list(labels),
        "confidence": confidence,
        "bootstrap_samples": spec.bootstrap_samples,
        "model": _model_block(model, model_reps, labels, confidence),
        "baselines": baseline_blocks,
        "comparisons": comparisons,
        "calibration": _calibration(model, bins),
        "slices": _slices(model, slices, n, k),
        "validation": validation,
    }
