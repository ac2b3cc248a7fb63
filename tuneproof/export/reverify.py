"""Re-verification of an export on the run's test split, against the model it was made from.

An export is a new model and earns release the same way: the task's own ``evaluate`` scores it with
the original model as the paired comparison ("original"), so every metric gets the export's value
with its interval and the paired bootstrap difference export minus original on the same resamples.
Beside that: the share of rows predicted exactly as the original (with its exact Clopper-Pearson
interval, so a small test split cannot prove 99% agreement) and the largest probability (or score)
difference on any row. The export gates are ordinary gates over that evaluation.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tuneproof.evaluate.multilabel import decide
from tuneproof.evidence import GateReport
from tuneproof.gates import check_gates
from tuneproof.gates.check import BOUNDED_HIGHER_IS_BETTER
from tuneproof.protocol.schema import ExportSpec, GateSpec
from tuneproof.tasks.base import Task
from tuneproof.tasks.multilabel import MultilabelTask
from tuneproof.tasks.regression import RegressionTask
from tuneproof.tasks.token_classification import TaggedSentence, TokenClassificationTask

ORIGINAL = "original"  # the name the original model carries as the export's comparison
IDENTICAL = "identical_predictions"
MAX_PROB_DIFF = "max_probability_difference"
MAX_SCORE_DIFF = "max_score_difference"
MAX_LOSS_DIFF = "max_token_loss_difference"  # language models: a row's per-token held-out loss
EXPORT_METRICS = (IDENTICAL, MAX_PROB_DIFF, MAX_SCORE_DIFF, MAX_LOSS_DIFF)
DEFAULT_DROP = 0.005
DEFAULT_IDENTICAL = 0.99
_UNITLESS = frozenset({"r2", "spearman"})


@dataclass
class Verification:
    evaluation: dict[str, Any]
    gates: GateReport


def main_metric(task: Task) -> str:
    """The metric the default export gate guards: the task's first selection metric on a 0-1 scale."""
    known = set(task.metric_names())
    for m in task.spec.selection_metrics:
        if m in known and (m in BOUNDED_HIGHER_IS_BETTER or m in _UNITLESS):
            return m
    return next(m for m in task.spec.selection_metrics if m in known)


def default_gates(task: Task) -> list[GateSpec]:
    metric = main_metric(task)
    return [
        GateSpec(
            name=f"export {metric} not worse than the original by more than {DEFAULT_DROP:g}",
            metric=metric,
            beats=ORIGINAL,
            by=-DEFAULT_DROP,
        ),
        GateSpec(
            name=f"identical predictions on at least {DEFAULT_IDENTICAL:.0%} of rows",
            metric=IDENTICAL,
            min=DEFAULT_IDENTICAL,
        ),
    ]


def align_labels(task: Task, outputs: np.ndarray, export_labels: Sequence[str]) -> np.ndarray:
    """The export's outputs with columns in the task's label order, read through the export's own
    label list: an export whose label list is wrong is then scored as the wrong model it is."""
    from tuneproof.export.onnx import reorder_columns

    if isinstance(task, RegressionTask) or list(export_labels) == list(task.labels):
        return outputs
    if isinstance(task, TokenClassificationTask):
        out = np.empty(len(outputs), dtype=object)
        for i, s in enumerate(outputs):
            out[i] = TaggedSentence(
                reorder_columns(s.probs, export_labels, task.labels), s.words, s.offsets, s.unscored
            )
        return out
    return reorder_columns(np.asarray(outputs), export_labels, task.labels)


def comparable(task: Task, outputs: np.ndarray) -> np.ndarray:
    """The original model's outputs in the form the task's ``evaluate`` takes a baseline's in."""
    if isinstance(task, MultilabelTask):
        return decide(outputs, task.thresholds)
    if isinstance(task, TokenClassificationTask):
        tags = task.tags_of(outputs)
        out = np.empty(len(tags), dtype=object)
        for i, t in enumerate(tags):
            out[i] = t
        return out
    return outputs


def agreement(
    task: Task, original: np.ndarray, exported: np.ndarray, score_tolerance: float
) -> tuple[np.ndarray, float, str, str]:
    """(row identical?, largest difference, its metric name, the rule) for the task's outputs."""
    if task.spec.generative:  # a language model: the same generation, and its per-token loss
        same = np.array(
            [a == b for a, b in zip(original["generation"], exported["generation"], strict=True)], dtype=bool
        )
        tokens = np.maximum(np.asarray(original["tokens"], dtype=np.float64), 1)
        loss = np.abs(np.asarray(exported["nll"], dtype=np.float64) - np.asarray(original["nll"])) / tokens
        return same, float(loss.max(initial=0.0)), MAX_LOSS_DIFF, "the same greedy generation"
    if isinstance(task, RegressionTask):
        diff = np.abs(np.asarray(exported, dtype=np.float64) - np.asarray(original, dtype=np.float64))
        tol = score_tolerance * task.std
        rule = f"|score difference| <= {score_tolerance:g} x the training target's std ({tol:.4g})"
        return diff <= tol, float(diff.max(initial=0.0)), MAX_SCORE_DIFF, rule
    if isinstance(task, TokenClassificationTask):
        same = np.array(
            [a == b for a, b in zip(task.tags_of(original), task.tags_of(exported), strict=True)], dtype=bool
        )
        worst = max(
            (
                float(np.abs(a.probs - b.probs).max(initial=0.0))
                for a, b in zip(original, exported, strict=True)
            ),
            default=0.0,
        )
        return same, worst, MAX_PROB_DIFF, "every word's tag is the same"
    o, e = np.asarray(original, dtype=np.float64), np.asarray(exported, dtype=np.float64)
    worst = float(np.abs(o - e).max(initial=0.0))
    if isinstance(task, MultilabelTask):
        same = np.all(decide(o, task.thresholds) == decide(e, task.thresholds), axis=1)
        return same, worst, MAX_PROB_DIFF, "the same set of labels (at the model's thresholds)"
    return o.argmax(1) == e.argmax(1), worst, MAX_PROB_DIFF, "the same predicted label"


def proportion_interval(k: int, n: int, confidence: float) -> dict[str, float]:
    """``{value, low, high}`` of k/n with the exact (Clopper-Pearson) interval."""
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return {"value": k / n, "low": float(ci.low), "high": float(ci.high)}


def reverify(
    task: Task,
    test: pd.DataFrame,
    original: np.ndarray,
    exported: np.ndarray,
    spec: ExportSpec,
) -> Verification:
    """Score ``exported`` (already in the task's label order) against ``original`` on ``test``."""
    evaluation = task.evaluate(test, exported, {ORIGINAL: comparable(task, original)}, None)
    same, worst, diff_name, rule = agreement(task, original, exported, spec.score_tolerance)
    n = len(same)
    model = dict(evaluation["model"])
    model[IDENTICAL] = proportion_interval(int(same.sum()), n, float(evaluation["confidence"]))
    model[diff_name] = worst
    evaluation["model"] = model
    evaluation["agreement"] = {
        "identical_rows": int(same.sum()),
        "n": n,
        "rule": rule,
        "interval": "exact binomial (Clopper-Pearson)",
        "differing_rows": [str(r) for r in test["row_id"].to_numpy()[~same][:20]],
    }
    evaluation = _jsonable(evaluation)
    gates = check_gates(spec.gates if spec.gates is not None else default_gates(task), evaluation)
    return Verification(evaluation, gates)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)))


__all__ = [
    "EXPORT_METRICS",
    "IDENTICAL",
    "MAX_LOSS_DIFF",
    "MAX_PROB_DIFF",
    "MAX_SCORE_DIFF",
    "ORIGINAL",
    "Verification",
    "agreement",
    "align_labels",
    "comparable",
    "default_gates",
    "main_metric",
    "reverify",
]
