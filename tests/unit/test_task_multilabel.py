"""Multi-label classification: label sets from JSONL and CSV, threshold tuning on validation only,
metrics against scikit-learn, the baselines and the loss contract."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from tuneproof.data.prepare import PreparedData, prepare_data
from tuneproof.evaluate.multilabel import decide, evaluate_multilabel, tune_thresholds
from tuneproof.protocol.loader import parse_protocol
from tuneproof.protocol.schema import EvaluateSpec
from tuneproof.tasks.registry import get_task


def _protocol(data: str = "  files: [x.jsonl]\n  label_column: labels", extra: str = "") -> Any:
    return parse_protocol(f"""
name: ml
task: multilabel
model: {{source: unused, max_length: 16}}
data:
{data}
cleaning: {{near_duplicates: {{enabled: false}}}}
leakage: {{exact: false, near: false}}
# Tiny fixtures on purpose: the split-size minimums are tested in test_cleaning_guards.py.
split: {{enforce_minimums: false}}
{extra}
""")


# --- label sets ------------------------------------------------------------------------------------


def test_label_sets_from_lists_and_delimited_strings() -> None:
    check: Any = get_task(
        _protocol("  files: [x.csv]\n  label_separator: ';'\n  labels: [a, b, c]")
    ).target_check()
    assert check(["b", "a", "b"]) == (["a", "b"], None)
    assert check("c; a") == (["a", "c"], None)
    assert check("") == ([], None)  # a text with no label
    assert check([]) == ([], None)
    assert check(None)[1] is not None and "missing" in check(None)[1]
    assert "unknown label 'z'" in check("a;z")[1]
    assert "empty label" in check("a;;b")[1]
    no_sep: Any = get_task(_protocol()).target_check()
    assert "label_separator" in no_sep("a;b")[1]


def test_csv_rows_are_read_with_the_separator(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(
        "text,labels\n" + "".join(f"text {i},{'a;b' if i % 2 else ''}\n" for i in range(12)) + "bad,a;q\n"
    )
    protocol = _protocol(
        f"  files: [{path}]\n  label_column: labels\n  label_separator: ';'\n  labels: [a, b]"
    )
    task: Any = get_task(protocol)
    with pytest.raises(Exception) as err:
        prepare_data(protocol, tmp_path, target_check=task.target_check(), stratify=task.stratify)
    assert [p.where for p in err.value.problems] == [f"{path}:14"]  # type: ignore[attr-defined]
    path.write_text("text,labels\n" + "".join(f"text {i},{'a;b' if i % 2 else ''}\n" for i in range(12)))
    prepared = prepare_data(protocol, tmp_path, target_check=task.target_check(), stratify=task.stratify)
    labels = [list(x) for df in prepared.splits.values() for x in df["label"]]
    assert sorted(map(tuple, labels)) == [()] * 6 + [("a", "b")] * 6


def test_schema_rules_for_multilabel() -> None:
    protocol = _protocol(extra="train: {early_stopping: {patience: 1}}")
    assert protocol.evaluate.baselines == ["majority", "tfidf_logreg"]
    assert protocol.train.early_stopping is not None and protocol.train.early_stopping.metric == "loss"
    assert _protocol(extra="imbalance: {strategy: class_weights}").imbalance.strategy == "class_weights"
    with pytest.raises(Exception, match="does not apply"):
        _protocol(extra="imbalance: {strategy: oversample}")
    with pytest.raises(Exception, match="must not be empty"):
        _protocol("  files: [x.csv]\n  label_separator: ''")


# --- thresholds ------------------------------------------------------------------------------------


def test_thresholds_maximise_each_labels_f1_by_hand() -> None:
    probs = np.array([[0.9, 0.6], [0.8, 0.6], [0.3, 0.2], [0.2, 0.1]])
    y = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    thresholds, tuned = tune_thresholds(probs, y)
    # Label 0, cut after the top 1/2/3/4 scores: F1 2/3, 1/2, 4/5, 2/3 -> top 3, midway 0.3 and 0.2.
    assert thresholds[0] == pytest.approx(0.25)
    assert tuned.tolist() == [True, False]
    assert thresholds[1] == 0.5  # no positive example: left at the default
    assert decide(probs, thresholds)[:, 0].tolist() == [1, 1, 1, 0]


def test_threshold_ties_go_to_the_cut_nearest_one_half() -> None:
    probs = np.array([[0.9], [0.45], [0.05]])
    y = np.array([[1], [0], [0]])
    thresholds, _ = tune_thresholds(probs, y)
    assert thresholds[0] == pytest.approx((0.9 + 0.45) / 2)


class _Probs(torch.nn.Module):
    """Returns fixed logits per row, looked up by the row's first token id."""

    def __init__(self, table: dict[int, list[float]]) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.table = table

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        logits = torch.tensor([self.table[int(i)] for i in input_ids[:, 0]]) + self.w

        class Out:
            pass

        out = Out()
        out.logits = logits  # type: ignore[attr-defined]
        return out


def test_thresholds_come_from_validation_and_test_labels_never_move_them() -> None:
    task: Any = get_task(_protocol())
    task.labels = ["a", "b"]
    logit = {1: [2.0, -2.0], 2: [1.0, 0.5], 3: [-1.0, 1.5], 4: [-3.0, -1.0]}
    model = _Probs(logit)
    val = [
        {"input_ids": [i], "labels": lab, "row_id": str(i)}
        for i, lab in [(1, [1.0, 0.0]), (2, [1.0, 1.0]), (3, [0.0, 1.0]), (4, [0.0, 0.0])]
    ]
    task.validation_metrics(model, val, 0, 8, "fp32")
    tuned = task.thresholds.copy()
    probs = 1 / (1 + np.exp(-np.array(list(logit.values()))))
    expected, _ = tune_thresholds(probs, np.array([f["labels"] for f in val]))
    assert tuned == pytest.approx(expected)
    test_probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    results = []
    for labels in ([["a"], ["b"]], [["b"], ["a"]]):  # flipping the test labels must not touch thresholds
        test = pd.DataFrame({"row_id": ["t1", "t2"], "text": ["x", "y"], "label": labels})
        results.append(task.evaluate(test, test_probs, {}, None))
        assert task.thresholds == pytest.approx(tuned)
    assert results[0]["thresholds"]["values"] == results[1]["thresholds"]["values"]
    assert results[0]["thresholds"]["tuned_on"] == "validation"
    assert results[0]["model"]["micro_f1"]["value"] == 1.0 and results[1]["model"]["micro_f1"]["value"] == 0.0


def test_without_validation_every_threshold_is_one_half() -> None:
    task: Any = get_task(_protocol())
    task.set_labels(
        PreparedData(
            {"train": pd.DataFrame({"label": [["a"], ["b", "c"]]}), "test": pd.DataFrame({"label": [["d"]]})},
            {},
        )
    )
    assert task.labels == ["a", "b", "c", "d"]  # a test-only label still counts (as always missed)
    test = pd.DataFrame({"row_id": ["t"], "text": ["x"], "label": [["d"]]})
    m = task.evaluate(test, np.array([[0.6, 0.4, 0.5, 0.49]]), {}, None)
    assert m["thresholds"]["tuned_on"] is None and set(m["thresholds"]["values"].values()) == {0.5}
    assert m["model"]["per_class"]["a"]["precision"] == 0.0 and m["model"]["per_class"]["d"]["recall"] == 0.0


# --- metrics ---------------------------------------------------------------------------------------


def test_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random((200, 4)) < [0.5, 0.3, 0.2, 0.6]).astype(int)
    pred = np.where(rng.random((200, 4)) < 0.8, y, 1 - y)
    m = evaluate_multilabel(
        y,
        pred,
        {"same": y},
        ["a", "b", "c", "d"],
        EvaluateSpec(bootstrap_samples=300),
        1,
        {"values": [0.5] * 4, "tuned_on": "validation"},
    )
    model = m["model"]
    assert model["micro_f1"]["value"] == pytest.approx(f1_score(y, pred, average="micro"))
    assert model["macro_f1"]["value"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert model["micro_precision"]["value"] == pytest.approx(precision_score(y, pred, average="micro"))
    assert model["micro_recall"]["value"] == pytest.approx(recall_score(y, pred, average="micro"))
    assert model["subset_accuracy"]["value"] == pytest.approx(accuracy_score(y, pred))
    per = f1_score(y, pred, average=None)
    assert [model["per_class"][k]["f1"] for k in "abcd"] == pytest.approx(per)
    assert [model["per_class"][k]["support"] for k in "abcd"] == y.sum(axis=0).tolist()
    for name in ("micro_f1", "macro_f1", "subset_accuracy"):
        assert model[name]["low"] < model[name]["value"] < model[name]["high"]
    assert m["comparisons"]["same"]["subset_accuracy"]["diff"] == pytest.approx(accuracy_score(y, pred) - 1)
    assert m["comparisons"]["same"]["subset_accuracy"]["high"] < 0


def test_probabilities_must_be_thresholded_before_evaluation() -> None:
    with pytest.raises(ValueError, match="0/1"):
        evaluate_multilabel(
            np.array([[1, 0]]),
            np.array([[0.7, 0.2]]),
            {},
            ["a", "b"],
            EvaluateSpec(bootstrap_samples=100),
            0,
            {"values": [0.5, 0.5]},
        )


# --- baselines and loss ----------------------------------------------------------------------------


def test_majority_baseline_predicts_labels_on_in_most_training_texts() -> None:
    protocol = _protocol(extra="evaluate: {baselines: [majority]}")
    task: Any = get_task(protocol)
    train = pd.DataFrame({"text": ["w"] * 4, "label": [["a", "b"], ["a"], ["a", "c"], ["b"]]})
    task.set_labels(PreparedData({"train": train}, {}))
    out = task.baselines(PreparedData({"train": train}, {}), pd.DataFrame({"text": ["x", "y"]})).outputs
    # a: 3/4 on -> on; b: 2/4 is not more than half -> off; c: 1/4 -> off
    assert out["majority"].tolist() == [[1, 0, 0], [1, 0, 0]]


def test_tfidf_baseline_tunes_its_thresholds_on_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    import tuneproof.tasks.multilabel as ml

    seen: list[np.ndarray] = []
    real = ml.tune_thresholds

    def watched(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen.append(np.asarray(y))
        return real(p, y)

    monkeypatch.setattr(ml, "tune_thresholds", watched)
    task: Any = get_task(_protocol(extra="evaluate: {baselines: [tfidf_logreg]}"))
    words = {"a": "good", "b": "bad"}

    def frame(n: int, seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        labels = [sorted({lab for lab in "ab" if rng.random() < 0.5}) for _ in range(n)]
        return pd.DataFrame(
            {"text": [" ".join(["the"] + [words[x] for x in lab]) for lab in labels], "label": labels}
        )

    splits = {"train": frame(40, 0), "validation": frame(10, 1), "test": frame(10, 2)}
    task.set_labels(PreparedData(splits, {}))
    out = task.baselines(PreparedData(splits, {}), splits["test"]).outputs
    assert len(seen) == 1 and seen[0].tolist() == task.multi_hot(list(splits["validation"]["label"])).tolist()
    assert out["tfidf_logreg"].tolist() == task.multi_hot(list(splits["test"]["label"])).tolist()


def test_loss_is_the_mean_over_labels_summed_over_texts() -> None:
    task: Any = get_task(_protocol())
    task.labels = ["a", "b"]
    model = _Probs({1: [0.0, 0.0], 2: [0.0, 0.0], 3: [0.0, 0.0]})
    batch = {
        "input_ids": torch.tensor([[1], [2], [3]]),
        "attention_mask": torch.ones(3, 1),
        "labels": torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]),
    }
    total, count = task.loss_fn([{"labels": [1.0, 0.0]}])(model, batch)
    assert count == 3
    assert float(total.detach()) == pytest.approx(3 * np.log(2))  # logit 0: log 2 per label, mean over 2
