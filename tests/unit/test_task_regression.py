"""Regression: target checks, metrics with intervals on hand-checkable data, baselines, the
standardised target and the loss contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.metrics import mean_absolute_error, r2_score

from tuneproof.data.prepare import PreparedData, prepare_data
from tuneproof.errors import DataValidationError
from tuneproof.evaluate.regression import evaluate_regression
from tuneproof.protocol.loader import parse_protocol
from tuneproof.protocol.schema import EvaluateSpec
from tuneproof.tasks.registry import get_task
from tuneproof.tasks.regression import numeric_target, tfidf_ridge


def _protocol(extra: str = "", data: str = "  files: [x.jsonl]\n  label_column: score") -> Any:
    return parse_protocol(f"""
name: reg
task: regression
model: {{source: unused, max_length: 16}}
data:
{data}
{extra}
""")


@pytest.mark.parametrize(("raw", "value"), [(1, 1.0), ("2.5", 2.5), (" -3e1 ", -30.0), (0.25, 0.25)])
def test_numeric_targets_are_parsed(raw: Any, value: float) -> None:
    assert numeric_target(raw) == (value, None)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (None, "missing"),
        ("", "missing"),
        ("high", "not a number"),
        (True, "must be a number"),
        (float("nan"), "finite"),
        ("inf", "finite"),
        ([1], "must be a number"),
    ],
)
def test_bad_targets_are_refused(raw: Any, fragment: str) -> None:
    value, err = numeric_target(raw)
    assert value is None and err is not None and fragment in err


def test_data_stage_reports_bad_scores_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    rows = [{"text": f"text {i}", "score": i / 10} for i in range(10)] + [{"text": "odd", "score": "n/a"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    protocol = _protocol(data=f"  files: [{path}]\n  label_column: score")
    task: Any = get_task(protocol)
    with pytest.raises(DataValidationError) as err:
        prepare_data(protocol, tmp_path, target_check=task.target_check(), stratify=task.stratify)
    assert [(p.where, p.message) for p in err.value.problems] == [
        (f"{path}:11", "target 'n/a' is not a number")
    ]


def test_schema_defaults_and_rules_for_regression() -> None:
    protocol = _protocol("train: {early_stopping: {patience: 1}}")
    assert protocol.evaluate.baselines == ["mean", "tfidf_ridge"]
    assert protocol.train.early_stopping is not None and protocol.train.early_stopping.metric == "rmse"
    for extra, fragment in [
        ("evaluate: {baselines: [majority]}", "do not apply to regression"),
        ("train: {early_stopping: {metric: macro_f1}}", "not a regression validation metric"),
        ("imbalance: {strategy: oversample}", "does not apply"),
        ("train: {label_smoothing: 0.1}", "label_smoothing"),
    ]:
        with pytest.raises(Exception, match=fragment):
            _protocol(extra)
    with pytest.raises(Exception, match=r"data\.labels does not apply"):
        _protocol(data="  files: [x.jsonl]\n  labels: [a, b]")


def test_metrics_by_hand_and_against_sklearn_scipy() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([1.0, 2.0, 3.0, 5.0])
    m = evaluate_regression(y, pred, {"mean": np.full(4, 2.5)}, EvaluateSpec(bootstrap_samples=200), seed=0)
    model = m["model"]
    assert model["mae"]["value"] == pytest.approx(0.25)
    assert model["rmse"]["value"] == pytest.approx(0.5)
    assert model["r2"]["value"] == pytest.approx(1 - 1 / 5)  # SSE 1, SST 5
    assert model["spearman"]["value"] == pytest.approx(1.0)
    base = m["baselines"]["mean"]
    assert base["mae"]["value"] == pytest.approx(1.0) and base["r2"]["value"] == pytest.approx(0.0)
    assert base["spearman"] == {"value": None, "low": None, "high": None}  # a constant has no ranking
    assert m["comparisons"]["mean"]["mae"]["diff"] == pytest.approx(-0.75)
    assert m["comparisons"]["mean"]["spearman"]["diff"] is None

    rng = np.random.default_rng(1)
    y = rng.normal(size=300)
    pred = y + rng.normal(scale=0.5, size=300)
    pred[:30] = np.round(pred[:30])  # ties, so Spearman's average ranks matter
    m = evaluate_regression(y, pred, {}, EvaluateSpec(bootstrap_samples=500), seed=2)["model"]
    assert m["mae"]["value"] == pytest.approx(mean_absolute_error(y, pred))
    assert m["r2"]["value"] == pytest.approx(r2_score(y, pred))
    assert m["spearman"]["value"] == pytest.approx(spearmanr(y, pred).statistic)
    for name in ("mae", "rmse", "r2", "spearman"):
        assert m[name]["low"] < m[name]["value"] < m[name]["high"]


def test_resampled_r2_and_spearman_are_those_of_the_resampled_rows() -> None:
    from tuneproof.evaluate.bootstrap import bootstrap_indices
    from tuneproof.evaluate.regression import r2_stat, spearman_stat

    rng = np.random.default_rng(3)
    y, pred = rng.normal(size=40), rng.normal(size=40)
    idx = bootstrap_indices(40, 4, seed=5)
    for row, r2, rho in zip(idx, r2_stat(y, pred)(idx), spearman_stat(y, pred)(idx), strict=True):
        assert r2 == pytest.approx(r2_score(y[row], pred[row]))
        assert rho == pytest.approx(spearmanr(y[row], pred[row]).statistic)


def test_tfidf_ridge_learns_from_the_training_texts_only() -> None:
    train = ["good good", "good", "bad", "bad bad", "good bad"] * 4
    y = np.array([2.0, 1.0, -1.0, -2.0, 0.0] * 4)
    out = tfidf_ridge(train, y, ["good", "bad", "unseen words"])
    assert out[0] > 0.5 and out[1] < -0.5
    assert out[2] == pytest.approx(y.mean())  # no known word: the intercept, i.e. the training mean


class _Constant(torch.nn.Module):
    """A 'model' whose standardised output is a fixed value per row, to check the scale round trip."""

    def __init__(self, z: float) -> None:
        super().__init__()
        self.z = torch.nn.Parameter(torch.tensor(z))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        z = self.z

        class Out:
            logits = z.expand(input_ids.shape[0], 1)

        return Out()


def test_targets_are_standardised_for_training_and_restored_for_prediction(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from helpers import write_tiny_bert

    task: Any = get_task(_protocol())
    train = pd.DataFrame(
        {
            "row_id": ["a", "b", "c", "d"],
            "text": ["good", "bad", "fine", "dull"],
            "label": [10.0, 20.0, 30.0, 40.0],
        }
    )
    task.set_labels(PreparedData({"train": train}, {}))
    assert (task.mean, task.std) == pytest.approx((25.0, np.std([10, 20, 30, 40])))
    tok = AutoTokenizer.from_pretrained(write_tiny_bert(tmp_path / "bert"))
    feats = task.features(train, tok, tmp_path / "cache")
    assert [f["labels"] for f in feats] == pytest.approx([(v - 25.0) / task.std for v in (10, 20, 30, 40)])
    assert task.predict(_Constant(1.0), feats, 0, 2, "fp32") == pytest.approx(np.full(4, 25.0 + task.std))
    # The loss: summed squared error of the standardised target, one term per text.
    batch = task.collate(0)(feats)
    total, count = task.loss_fn(feats)(_Constant(0.0), batch)
    assert count == 4
    assert float(total.detach()) == pytest.approx(sum(((v - 25.0) / task.std) ** 2 for v in (10, 20, 30, 40)))
