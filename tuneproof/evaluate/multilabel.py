"""Multi-label evaluation and per-label decision thresholds: the multilabel ``metrics.json`` layout.

Thresholds are tuned by :func:`tune_thresholds` on the validation split only and arrive here as
fixed 0/1 decisions, so nothing in the test evaluation can move a threshold.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tuneproof.evaluate.bootstrap import Statistic, row_resamples
from tuneproof.evaluate.intervals import compare, json_float, score, slice_rows
from tuneproof.protocol.schema import EvaluateSpec

SCALAR_METRICS = ("micro_f1", "macro_f1", "micro_precision", "micro_recall", "subset_accuracy")
PER_LABEL_STATS = ("precision", "recall", "f1", "support", "threshold")
SLICE_METRICS = ("micro_f1", "subset_accuracy")
DEFAULT_THRESHOLD = 0.5


def multilabel_metric_names(labels: Sequence[str] | None = None) -> list[str]:
    names = list(SCALAR_METRICS)
    for label in labels if labels else ["*"]:
        names += [f"per_class.{label}.{s}" for s in PER_LABEL_STATS]
    return names


def tune_thresholds(probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-label thresholds that maximise that label's F1 on (validation) ``probs`` vs ``y``.

    Returns the thresholds and a mask of the labels that could be tuned; a label with no positive
    example keeps 0.5, since any cut-off scores F1 0 there. Candidate cut-offs are midpoints between
    consecutive distinct scores, so the chosen threshold does not sit on a validation score; ties
    in F1 go to the cut-off nearest 0.5, the untuned default.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y).astype(bool)
    if probs.shape != y.shape or probs.ndim != 2:
        raise ValueError(f"probs {probs.shape} and labels {y.shape} must be the same [n, k] shape")
    k = probs.shape[1]
    thresholds = np.full(k, DEFAULT_THRESHOLD)
    tuned = np.zeros(k, dtype=bool)
    for j in range(k):
        positives = int(y[:, j].sum())
        if positives == 0 or probs.shape[0] == 0:
            continue
        order = np.argsort(-probs[:, j], kind="stable")
        p, t = probs[order, j], y[order, j]
        tp = np.cumsum(t)
        # Predicting the top i+1 scores positive; only cut where the next score is strictly lower.
        cut = np.flatnonzero(np.append(p[:-1] > p[1:], True))
        f1 = 2.0 * tp[cut] / (positives + cut + 1)
        below = np.append(p[1:], -np.inf)[cut]
        candidates = np.where(np.isfinite(below), (p[cut] + below) / 2.0, p[cut] / 2.0)
        best = np.flatnonzero(np.isclose(f1, f1.max()))
        thresholds[j] = candidates[best[np.argmin(np.abs(candidates[best] - DEFAULT_THRESHOLD))]]
        tuned[j] = True
    return thresholds, tuned


def decide(probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """0/1 decisions: a label is on when its probability reaches its threshold."""
    return (np.asarray(probs) >= np.asarray(thresholds)[None, :]).astype(np.int8)


class _Counts:
    def __init__(self, y: np.ndarray, pred: np.ndarray) -> None:
        self.tp = (y & pred).astype(np.int64)  # [n, k]
        self.fp = (~y & pred).astype(np.int64)
        self.fn = (y & ~pred).astype(np.int64)
        self.exact = np.all(y == pred, axis=1).astype(np.float64)


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    den = 2 * tp + fp + fn
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, 2.0 * tp / den, 0.0)


def _stats(c: _Counts) -> dict[str, Statistic]:
    tp, fp, fn = c.tp.sum(axis=1), c.fp.sum(axis=1), c.fn.sum(axis=1)

    def micro(which: str) -> Statistic:
        def stat(idx: np.ndarray) -> np.ndarray:
            a, b, d = tp[idx].sum(axis=1), fp[idx].sum(axis=1), fn[idx].sum(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                if which == "precision":
                    return np.where(a + b > 0, a / (a + b), 0.0)
                if which == "recall":
                    return np.where(a + d > 0, a / (a + d), 0.0)
            return _f1(a, b, d)

        return stat

    def macro(idx: np.ndarray) -> np.ndarray:
        # Mean over the labels that occur in the gold or the predictions of the resample, as the
        # classification macro scores do: a label absent from both says nothing about the model.
        k = c.tp.shape[1]
        sums = [np.stack([a[:, j][idx].sum(axis=1) for j in range(k)], axis=1) for a in (c.tp, c.fp, c.fn)]
        present = (sums[0] + sums[1] + sums[2]) > 0
        f1 = np.where(present, _f1(*sums), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(present.any(axis=1), f1.sum(axis=1) / present.sum(axis=1), np.nan)

    return {
        "micro_f1": micro("f1"),
        "macro_f1": macro,
        "micro_precision": micro("precision"),
        "micro_recall": micro("recall"),
        "subset_accuracy": lambda idx: c.exact[idx].mean(axis=1),
    }


def _per_label(c: _Counts, labels: Sequence[str], thresholds: np.ndarray | None) -> dict[str, Any]:
    tp, fp, fn = c.tp.sum(axis=0), c.fp.sum(axis=0), c.fn.sum(axis=0)
    out = {}
    for j, label in enumerate(labels):
        row: dict[str, Any] = {
            "precision": float(tp[j] / (tp[j] + fp[j])) if tp[j] + fp[j] else 0.0,
            "recall": float(tp[j] / (tp[j] + fn[j])) if tp[j] + fn[j] else 0.0,
            "f1": float(_f1(tp[j], fp[j], fn[j])),
            "support": int(tp[j] + fn[j]),
        }
        if thresholds is not None:
            row["threshold"] = float(thresholds[j])
        out[label] = row
    return out


def _as_bool(name: str, a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    a = np.asarray(a)
    if a.shape != shape:
        raise ValueError(f"{name}: shape {a.shape}, expected {shape}")
    if not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name}: decisions must be 0/1 (apply the thresholds first)")
    return a.astype(bool)


def evaluate_multilabel(
    y_true: np.ndarray,
    decisions: np.ndarray,
    baselines: Mapping[str, np.ndarray],
    labels: Sequence[str],
    spec: EvaluateSpec,
    seed: int,
    thresholds: Mapping[str, Any],
    slices: Mapping[str, np.ndarray] | None = None,
    validation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Micro/macro F1 and subset accuracy with intervals over resampled texts, per-label P/R/F1, and
    paired differences model minus baseline. ``decisions`` and every baseline are 0/1 ``[n, k]``
    matrices whose row ``i`` is test text ``i`` and column ``j`` label ``labels[j]``."""
    n, k = len(y_true), len(labels)
    if n == 0:
        raise ValueError("cannot evaluate on an empty test split")
    y = _as_bool("y_true", y_true, (n, k))
    idx = row_resamples(n, spec.bootstrap_samples, seed)
    model_counts = _Counts(y, _as_bool("model", decisions, (n, k)))
    model, model_reps = score(_stats(model_counts), idx, spec.confidence)
    model["per_class"] = _per_label(model_counts, labels, np.asarray(thresholds["values"]))
    baseline_blocks: dict[str, Any] = {}
    comparisons: dict[str, Any] = {}
    for name, base in baselines.items():
        counts = _Counts(y, _as_bool(f"baseline {name!r}", base, (n, k)))
        block, reps = score(_stats(counts), idx, spec.confidence)
        block["per_class"] = _per_label(counts, labels, None)
        baseline_blocks[name] = block
        comparisons[name] = compare(model_reps, reps, SCALAR_METRICS, spec.confidence)
    out_slices = []
    stats = _stats(model_counts)
    for name, rows in slice_rows(slices or {}, n):
        metrics = {m: json_float(float(stats[m](rows[None, :])[0])) for m in SLICE_METRICS}
        out_slices.append({"name": name, "n": int(rows.size), "metrics": metrics})
    return {
        "task": "multilabel",
        "split": "test",
        "n": n,
        "labels": list(labels),
        "confidence": spec.confidence,
        "bootstrap_samples": spec.bootstrap_samples,
        "label_cardinality": float(y.sum(axis=1).mean()),
        "thresholds": {
            **thresholds,
            "values": dict(zip(labels, map(float, thresholds["values"]), strict=True)),
        },
        "model": model,
        "baselines": baseline_blocks,
        "comparisons": comparisons,
        "slices": out_slices,
        "validation": validation,
    }


__all__ = [
    "SCALAR_METRICS",
    "SLICE_METRICS",
    "decide",
    "evaluate_multilabel",
    "multilabel_metric_names",
    "tune_thresholds",
]
