"""Labelled feedback: the task's metrics re-estimated on the window with bootstrap intervals and
compared with the release evaluation, decided on intervals as the gates were.

The release side is re-estimated from the reference (the test split's labels and the released
model's probabilities, the very rows ``metrics.json`` was computed from), so both sides are
resampled the same way. The two samples are independent, so their resamples are drawn independently
and the interval of window minus release is taken over the paired replicate arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tuneproof.errors import Problem, ProtocolError
from tuneproof.evaluate.bootstrap import (
    Statistic,
    point_estimate,
    replicates,
    row_resamples,
    summarize,
    summarize_difference,
)
from tuneproof.evaluate.direction import lower_is_better
from tuneproof.evaluate.metrics import (
    accuracy_stat,
    ece_stat,
    macro_stat,
    mean_stat,
    roc_auc_stat,
    row_log_loss,
)
from tuneproof.gates.check import check_gates
from tuneproof.monitor.features import Observed
from tuneproof.protocol.schema import GateSpec, MonitorSpec

CLASSIFICATION_METRICS = (
    "accuracy",
    "macro_f1",
    "macro_precision",
    "macro_recall",
    "roc_auc",
    "ece",
    "log_loss",
)


def _stats(y: np.ndarray, probs: np.ndarray, k: int, bins: int) -> dict[str, Statistic]:
    pred = probs.argmax(axis=1)
    correct = (pred == y).astype(np.float64)
    codes = y.astype(np.int64) * k + pred
    return {
        "accuracy": accuracy_stat(correct),
        "macro_f1": macro_stat(codes, k, "f1"),
        "macro_precision": macro_stat(codes, k, "precision"),
        "macro_recall": macro_stat(codes, k, "recall"),
        "roc_auc": roc_auc_stat(y, probs),
        "ece": ece_stat(probs.max(axis=1), correct, bins),
        "log_loss": mean_stat(row_log_loss(y, probs)),
    }


def check_metric_names(spec: MonitorSpec, task: str) -> None:
    if task != "classification":
        return
    wrong = [m for m in spec.performance_metrics if m not in CLASSIFICATION_METRICS]
    if wrong:
        raise ProtocolError(
            [
                Problem(
                    "monitor.performance_metrics",
                    f"{wrong} are not classification metrics; use {', '.join(CLASSIFICATION_METRICS)}",
                )
            ]
        )


def compare_performance(
    ref: Observed,
    win: Observed,
    labels: Sequence[str],
    spec: MonitorSpec,
    release: Mapping[str, Any],
    gates: Sequence[GateSpec],
    calibration_bins: int,
    confidence: float,
    seed: int,
) -> dict[str, Any]:
    """Per metric: the window's estimate, the release estimate, their difference with an interval, and
    a verdict; plus the protocol's absolute (min/max) gates re-checked on the window's intervals."""
    if ref.labels is None or ref.probabilities is None or win.labels is None or win.probabilities is None:
        return {"available": False, "reason": "needs labels and class probabilities on both sides"}
    label2id = {lab: i for i, lab in enumerate(labels)}
    k = len(labels)
    y_ref = np.array([label2id[x] for x in ref.labels])
    y_win = np.array([label2id[x] for x in win.labels])
    ref_stats = _stats(y_ref, ref.probabilities, k, calibration_bins)
    win_stats = _stats(y_win, win.probabilities, k, calibration_bins)
    # AUC needs every class present in the labels; elsewhere the bootstrap drops undefined resamples.
    idx_ref = row_resamples(len(y_ref), spec.bootstrap_samples, seed)
    idx_win = row_resamples(len(y_win), spec.bootstrap_samples, seed + 1)
    metrics: dict[str, Any] = {}
    window_block: dict[str, Any] = {}
    degraded: list[str] = []
    for name in spec.performance_metrics:
        if name == "roc_auc" and len(set(y_win.tolist())) < k:
            metrics[name] = {"verdict": "undefined", "detail": "a class is absent from the window's labels"}
            window_block[name] = None
            continue
        pw, rw = point_estimate(win_stats[name], len(y_win)), replicates(win_stats[name], idx_win)
        pr, rr = point_estimate(ref_stats[name], len(y_ref)), replicates(ref_stats[name], idx_ref)
        diff = summarize_difference(pw, rw, pr, rr, confidence)
        lower_better = lower_is_better(name)
        low, high = diff["low"], diff["high"]
        if low is None or high is None:
            verdict = "undefined"
        elif (not lower_better and high < -spec.tolerance) or (lower_better and low > spec.tolerance):
            verdict = "worse"
        elif (not lower_better and low > spec.tolerance) or (lower_better and high < -spec.tolerance):
            verdict = "better"
        else:
            verdict = "no evidence of change"
        if verdict == "worse":
            degraded.append(name)
        recorded = (release.get("model") or {}).get(name)
        window_block[name] = summarize(pw, rw, confidence)
        metrics[name] = {
            "window": window_block[name],
            "release": summarize(pr, rr, confidence),
            "release_recorded": recorded,  # metrics.json's entry: the point must equal the line above
            "difference": diff,
            "lower_is_better": lower_better,
            "verdict": verdict,
        }
    bound_gates = [g for g in gates if (g.min is not None or g.max is not None) and g.metric in window_block]
    gate_check = check_gates(bound_gates, {"model": window_block}).to_json() if bound_gates else None
    return {
        "available": True,
        "n": len(y_win),
        "confidence": confidence,
        "bootstrap_samples": spec.bootstrap_samples,
        "tolerance": spec.tolerance,
        "rule": (
            f"worse when the {confidence:.0%} interval of window minus release lies entirely below "
            f"-{spec.tolerance:g} (above +{spec.tolerance:g} for metrics where lower is better)"
        ),
        "metrics": metrics,
        "gates_on_window": gate_check,
        "degraded": degraded,
    }
