"""Classification metrics, intervals, paired comparisons, calibration and slices."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, log_loss, precision_recall_fscore_support, roc_auc_score

from tuneproof.evaluate.bootstrap import bootstrap_indices, replicates
from tuneproof.evaluate.classification import (
    SCALAR_METRICS,
    classification_metric_names,
    evaluate_classification,
)
from tuneproof.evaluate.metrics import roc_auc_stat
from tuneproof.protocol.schema import EvaluateSpec

SPEC = EvaluateSpec(bootstrap_samples=200)
# Hand example: predictions 0, 1, 1, 1, 0 against labels 0, 0, 1, 1, 1.
Y = np.array([0, 0, 1, 1, 1])
P = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])


def _probs(y: np.ndarray, k: int, signal: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(y.size, k))
    logits[np.arange(y.size), y] += signal
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def test_hand_computed_example() -> None:
    m = evaluate_classification(Y, P, {}, ["neg", "pos"], SPEC, seed=1)["model"]
    assert m["accuracy"]["value"] == pytest.approx(0.6, abs=1e-12)
    # class neg: tp 1 of 2 predicted, 2 true -> P = R = F1 = 1/2; class pos: 2 of 3 -> 2/3 each.
    assert m["macro_f1"]["value"] == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-12)
    assert m["macro_precision"]["value"] == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-12)
    assert m["per_class"]["pos"] == {
        "precision": pytest.approx(2 / 3),
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(2 / 3),
        "support": 3,
    }
    assert m["confusion_matrix"] == [[1, 1], [1, 2]]
    # Positives score 0.8, 0.7, 0.4 against negatives 0.1, 0.6: 5 of 6 pairs ordered right.
    assert m["roc_auc"]["value"] == pytest.approx(5 / 6, abs=1e-12)
    # Bins of confidence: 0.9 (right), 0.8 (right), 0.7 (right), 0.6 and 0.6 (both wrong):
    # (|1-0.9| + |1-0.8| + |1-0.7| + 2*|0-0.6|) / 5 = 1.8 / 5.
    assert m["ece"]["value"] == pytest.approx(0.36, abs=1e-12)
    expected_ll = -np.mean(np.log([0.9, 0.4, 0.8, 0.7, 0.4]))
    assert m["log_loss"]["value"] == pytest.approx(expected_ll, abs=1e-12)


@pytest.mark.parametrize("k", [2, 4])
def test_point_estimates_match_scikit_learn(k: int) -> None:
    rng = np.random.default_rng(k)
    y = rng.integers(0, k, 300)
    probs = np.round(_probs(y, k, 1.0, seed=k), 2)  # rounding creates ties, which AUC must score half
    probs /= probs.sum(axis=1, keepdims=True)
    m = evaluate_classification(y, probs, {}, [f"c{i}" for i in range(k)], SPEC, seed=1)["model"]
    pred = probs.argmax(axis=1)
    p, r, f, _ = precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
    auc = roc_auc_score(y, probs[:, 1]) if k == 2 else roc_auc_score(y, probs, multi_class="ovr")
    assert m["accuracy"]["value"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert m["macro_precision"]["value"] == pytest.approx(p, abs=1e-12)
    assert m["macro_recall"]["value"] == pytest.approx(r, abs=1e-12)
    assert m["macro_f1"]["value"] == pytest.approx(f, abs=1e-12)
    assert m["roc_auc"]["value"] == pytest.approx(auc, abs=1e-12)
    assert m["log_loss"]["value"] == pytest.approx(log_loss(y, probs, labels=list(range(k))), abs=1e-9)


def test_resampled_auc_matches_scikit_learn_on_each_resample() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 80)
    probs = np.round(_probs(y, 3, 1.0, seed=3), 1)
    probs /= probs.sum(axis=1, keepdims=True)
    idx = bootstrap_indices(80, 5, seed=4)
    ours = replicates(roc_auc_stat(y, probs), idx)
    theirs = [roc_auc_score(y[i], probs[i], multi_class="ovr") for i in idx]
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


def test_layout_is_the_documented_one_and_strict_json() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    out = evaluate_classification(
        y,
        _probs(y, 2, 2.0, 0),
        {"majority": np.full((200, 2), 0.5)},
        ["fresh", "rotten"],
        SPEC,
        seed=13,
        validation={"accuracy": 0.9},
    )
    assert list(out) == [
        "task",
        "split",
        "n",
        "labels",
        "confidence",
        "bootstrap_samples",
        "interval",
        "model",
        "baselines",
        "comparisons",
        "calibration",
        "slices",
        "validation",
    ]
    assert set(out["model"]) == {*SCALAR_METRICS, "per_class", "confusion_matrix"}
    assert set(out["baselines"]["majority"]) == set(out["model"])
    assert set(out["comparisons"]["majority"]) == set(SCALAR_METRICS)
    assert set(out["comparisons"]["majority"]["accuracy"]) == {"diff", "low", "high"}
    assert out["validation"] == {"accuracy": 0.9} and out["n"] == 200
    json.dumps(out, allow_nan=False)
    bins = out["calibration"]["bins"]
    assert sum(b["count"] for b in bins) == 200
    assert all(b["low"] <= b["confidence"] <= b["high"] for b in bins)
    # ECE is the count-weighted gap of the reliability bins.
    ece = sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins) / 200
    assert out["model"]["ece"]["value"] == pytest.approx(ece, abs=1e-12)


def test_intervals_contain_point_estimates() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 400)
    out = evaluate_classification(y, _probs(y, 3, 1.5, 1), {}, ["a", "b", "c"], EvaluateSpec(), seed=2)
    for name in SCALAR_METRICS:
        e = out["model"][name]
        assert e["low"] <= e["value"] <= e["high"], name


def test_model_compared_with_itself_differs_by_exactly_zero() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 300)
    p = _probs(y, 2, 1.0, 2)
    out = evaluate_classification(y, p, {"same": p.copy()}, ["a", "b"], SPEC, seed=3)
    for name in SCALAR_METRICS:
        assert out["comparisons"]["same"][name] == {"diff": 0.0, "low": 0.0, "high": 0.0}, name


def test_clearly_better_model_has_positive_lower_bound_and_lower_losses() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 500)
    out = evaluate_classification(
        y, _probs(y, 2, 3.0, 5), {"weak": _probs(y, 2, 0.3, 6)}, ["a", "b"], SPEC, 7
    )
    c = out["comparisons"]["weak"]
    for name in ("accuracy", "macro_f1", "roc_auc"):
        assert c[name]["low"] > 0, name
    assert c["log_loss"]["high"] < 0  # lower is better: still reported as model minus baseline


def test_auc_is_null_when_a_class_is_absent_from_the_labels() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    p = np.full((6, 3), 1 / 3)
    out = evaluate_classification(y, p, {"m": p}, ["a", "b", "c"], SPEC, seed=1)
    assert out["model"]["roc_auc"] is None and out["comparisons"]["m"]["roc_auc"] is None
    assert out["model"]["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    json.dumps(out, allow_nan=False)


def test_auc_resamples_missing_a_class_are_skipped() -> None:
    # One positive in 30 rows: about a third of resamples lack it and have no AUC.
    y = np.zeros(30, dtype=np.int64)
    y[0] = 1
    p = np.tile([0.7, 0.3], (30, 1))
    p[0] = [0.2, 0.8]
    auc = evaluate_classification(y, p, {}, ["a", "b"], SPEC, seed=1)["model"]["roc_auc"]
    assert auc == {"value": 1.0, "low": 1.0, "high": 1.0}


def test_slices_report_point_metrics_and_skip_empty_ones() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]])
    slices = {
        "first": np.array([True, True, False, False]),
        "last": np.array([False, False, True, True]),
        "none": np.zeros(4, dtype=bool),
    }
    out = evaluate_classification(y, p, {}, ["a", "b"], SPEC, seed=1, slices=slices)
    assert [s["name"] for s in out["slices"]] == ["first", "last"]
    first, last = out["slices"]
    assert first["n"] == 2 and first["metrics"]["accuracy"] == pytest.approx(0.5)
    # first: a predicted once (right), b predicted once (wrong, no b present): F1 a = 2/3, b = 0.
    assert first["metrics"]["macro_f1"] == pytest.approx(1 / 3)
    assert last["metrics"] == {"accuracy": 1.0, "macro_f1": 1.0}
    with pytest.raises(ValueError, match="boolean mask"):
        evaluate_classification(y, p, {}, ["a", "b"], SPEC, seed=1, slices={"bad": np.array([1, 0, 1, 0])})


def test_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="logits"):
        evaluate_classification(Y, P * 3, {}, ["a", "b"], SPEC, seed=1)
    with pytest.raises(ValueError, match="shape"):
        evaluate_classification(Y, P, {"short": P[:4]}, ["a", "b"], SPEC, seed=1)
    with pytest.raises(ValueError, match="label ids"):
        evaluate_classification(Y + 1, P, {}, ["a", "b"], SPEC, seed=1)


def test_same_seed_same_intervals() -> None:
    a = evaluate_classification(Y, P, {}, ["a", "b"], SPEC, seed=5)
    b = evaluate_classification(Y, P, {}, ["a", "b"], SPEC, seed=5)
    assert a == b


def test_metric_names_for_gates() -> None:
    assert "per_class.fresh.f1" in classification_metric_names(["fresh", "rotten"])
    assert "per_class.*.recall" in classification_metric_names()


def test_full_evaluation_is_fast_enough() -> None:
    # The budget from the design: model + 2 baselines, n = 1300, B = 1000 well under 10 s on one core.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1300)
    base = {"majority": np.tile([0.5, 0.5], (1300, 1)), "other": _probs(y, 2, 1.0, 2)}
    start = time.perf_counter()
    evaluate_classification(y, _probs(y, 2, 2.0, 1), base, ["a", "b"], EvaluateSpec(), seed=1)
    assert time.perf_counter() - start < 10.0
