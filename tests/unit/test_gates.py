"""Gate verdicts decided on intervals, and gate-name validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tuneproof.evaluate.classification import (
    SLICE_METRICS,
    classification_metric_names,
    evaluate_classification,
)
from tuneproof.evaluate.direction import LOWER_IS_BETTER
from tuneproof.evidence import SCHEMA_VERSION
from tuneproof.gates import check_gates, validate_gate_names
from tuneproof.protocol.schema import EvaluateSpec, GateSpec


def _metrics() -> dict[str, Any]:
    return {
        "confidence": 0.95,
        "model": {
            "accuracy": {"value": 0.84, "low": 0.82, "high": 0.86},
            "ece": {"value": 0.04, "low": 0.03, "high": 0.06},
            "log_loss": {"value": 0.40, "low": 0.37, "high": 0.43},
            "roc_auc": None,
            "per_class": {
                "fresh": {"precision": 0.8, "recall": 0.7, "f1": 0.75, "support": 10},
                "v1.2": {"precision": 0.9, "recall": 0.9, "f1": 0.9, "support": 5},
            },
        },
        "comparisons": {
            "majority": {
                "accuracy": {"diff": 0.30, "low": 0.27, "high": 0.33},
                "log_loss": {"diff": -0.29, "low": -0.32, "high": -0.26},
                "ece": {"diff": 0.02, "low": -0.01, "high": 0.05},
            },
            "tfidf_logreg": {"accuracy": {"diff": 0.03, "low": -0.01, "high": 0.06}},
        },
        "slices": [
            {"name": "length < 10", "n": 30, "metrics": {"accuracy": 0.7, "macro_f1": 0.69}},
            {"name": "length >= 10", "n": 90, "metrics": {"accuracy": 0.9, "macro_f1": 0.88}},
        ],
    }


def _one(gate: GateSpec, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    return check_gates([gate], metrics or _metrics()).to_json()["verdicts"][0]


def test_min_uses_lower_bound_and_max_upper_bound() -> None:
    v = _one(GateSpec(metric="accuracy", min=0.82))
    assert v["passed"] and v["decided_on"] == "lower bound of 95% interval"
    assert (v["observed"], v["low"], v["high"], v["threshold"]) == (0.84, 0.82, 0.86, 0.82)
    assert not _one(GateSpec(metric="accuracy", min=0.83))["passed"]  # point 0.84 would pass
    assert _one(GateSpec(metric="ece", max=0.06))["passed"]
    v = _one(GateSpec(metric="ece", max=0.05))
    assert not v["passed"] and v["decided_on"] == "upper bound of 95% interval"
    assert "point estimate alone would pass" in v["detail"]


def test_beats_higher_is_better_uses_lower_bound_of_paired_difference() -> None:
    v = _one(GateSpec(metric="accuracy", beats="majority", by=0.25))
    assert v["passed"] and v["baseline"] == "majority" and v["observed"] == 0.30
    assert v["decided_on"].startswith("lower bound of 95% paired bootstrap difference")
    assert not _one(GateSpec(metric="accuracy", beats="majority", by=0.28))["passed"]
    # Point difference +0.03 but the interval reaches -0.01: not shown to beat.
    assert not _one(GateSpec(metric="accuracy", beats="tfidf_logreg"))["passed"]


def test_beats_lower_is_better_uses_upper_bound_below_minus_by() -> None:
    assert {"ece", "log_loss", "mae", "rmse", "mse", "perplexity", "loss"} <= LOWER_IS_BETTER
    v = _one(GateSpec(metric="log_loss", beats="majority", by=0.2))
    assert v["passed"] and v["threshold"] == -0.2 and "upper bound" in v["decided_on"]
    assert "lower log_loss is better" in v["decided_on"]
    assert not _one(GateSpec(metric="log_loss", beats="majority", by=0.3))["passed"]
    # A worse calibration error (positive difference) must never count as beating.
    assert not _one(GateSpec(metric="ece", beats="majority"))["passed"]


def test_unknown_names_fail_with_a_clear_detail() -> None:
    v = _one(GateSpec(metric="acuracy", min=0.1))
    assert not v["passed"] and "unknown metric 'acuracy'" in v["detail"] and "'accuracy'" in v["detail"]
    v = _one(GateSpec(metric="accuracy", beats="bert"))
    assert not v["passed"] and "baseline 'bert' was not evaluated" in v["detail"]
    v = _one(GateSpec(metric="nonsense", beats="majority"))
    assert not v["passed"] and "unknown metric" in v["detail"]
    v = _one(GateSpec(metric="roc_auc", min=0.5))
    assert not v["passed"] and "undefined" in v["detail"]
    v = _one(GateSpec(metric="per_class.fresh", min=0.5))
    assert not v["passed"] and "group" in v["detail"]
    v = _one(GateSpec(metric="per_class.fresh.f1", beats="majority"))
    assert not v["passed"] and "no paired comparison" in v["detail"]


def test_per_class_gates_use_point_estimates_and_say_so() -> None:
    v = _one(GateSpec(metric="per_class.fresh.f1", min=0.7))
    assert v["passed"] and v["observed"] == 0.75 and v["decided_on"].startswith("point estimate")
    assert not _one(GateSpec(metric="per_class.fresh.recall", min=0.75))["passed"]
    assert _one(GateSpec(metric="per_class.v1.2.f1", min=0.85))["passed"]  # a label holding a dot


def test_slice_min_checks_every_slice() -> None:
    v = _one(GateSpec(metric="accuracy", slice_min=0.65))
    assert (
        v["passed"] and v["observed"] == 0.7 and v["decided_on"].startswith("point estimate of every slice")
    )
    v = _one(GateSpec(metric="accuracy", slice_min=0.75))
    assert not v["passed"] and "length < 10 (n=30)" in v["detail"]
    no_slices = {**_metrics(), "slices": []}
    assert not _one(GateSpec(metric="accuracy", slice_min=0.1), no_slices)["passed"]
    assert not _one(GateSpec(metric="roc_auc", slice_min=0.1))["passed"]


def test_overall_result_and_labels() -> None:
    result = check_gates(
        [GateSpec(metric="accuracy", min=0.8), GateSpec(metric="accuracy", min=0.9)], _metrics()
    ).to_json()
    assert result["passed"] is False
    assert [v["gate"] for v in result["verdicts"]] == ["accuracy >= 0.8", "accuracy >= 0.9"]
    assert [v["passed"] for v in result["verdicts"]] == [True, False]
    assert check_gates([], _metrics()).to_json() == {
        "schema_version": SCHEMA_VERSION,
        "passed": True,
        "undecidable": [],
        "verdicts": [],
    }
    named = check_gates([GateSpec(name="good enough", metric="accuracy", min=0.8)], _metrics()).to_json()
    assert named["verdicts"][0]["gate"] == "good enough"


def test_small_test_set_passes_on_point_but_fails_on_interval() -> None:
    # 85% right on 20 rows vs 85% right on 2000 rows, gate accuracy >= 0.75.
    def run(n: int) -> dict[str, Any]:
        y = np.arange(n) % 2
        pred = y.copy()
        pred[: round(0.15 * n)] ^= 1
        probs = np.where(pred[:, None] == np.arange(2), 0.9, 0.1)
        metrics = evaluate_classification(y, probs, {}, ["a", "b"], EvaluateSpec(), seed=13)
        assert metrics["model"]["accuracy"]["value"] == pytest.approx(0.85)
        return check_gates([GateSpec(metric="accuracy", min=0.75)], metrics).to_json()

    small, large = run(20), run(2000)
    assert small["passed"] is False and "point estimate alone would pass" in small["verdicts"][0]["detail"]
    assert large["passed"] is True


def test_validate_gate_names_reports_paths() -> None:
    gates = [
        GateSpec(metric="accuracy", min=0.8),
        GateSpec(metric="macro_f", min=0.8),
        GateSpec(metric="accuracy", beats="bert"),
        GateSpec(metric="per_class.fresh.f1", min=0.5),
        GateSpec(metric="per_class.fresh.f1", beats="majority"),
        GateSpec(metric="log_loss", slice_min=0.5),
    ]
    problems = validate_gate_names(
        gates, classification_metric_names(), ["majority", "tfidf_logreg"], SLICE_METRICS
    )
    found = {(p.where, p.message.split(";")[0].split(" (")[0]) for p in problems}
    assert [p.where for p in problems] == [
        "gates[1].metric",
        "gates[2].beats",
        "gates[4].metric",
        "gates[5].metric",
    ]
    assert ("gates[1].metric", "unknown metric 'macro_f'") in found
    assert "did you mean 'macro_f1'" in problems[0].message
    assert "'bert' is not evaluated" in problems[1].message
    # With the labels known, per-class names are checked against them.
    known = classification_metric_names(["fresh", "rotten"])
    assert validate_gate_names([GateSpec(metric="per_class.fresh.f1", min=0.5)], known, []) == []
    bad = validate_gate_names([GateSpec(metric="per_class.stale.f1", min=0.5)], known, [])
    assert [p.where for p in bad] == ["gates[0].metric"]
