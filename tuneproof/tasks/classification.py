"""Text classification (one label per text, binary or multi-class) as a task module.

A task module supplies what differs between tasks: how targets are validated, how a model is
built, how rows become features, the loss, how predictions are made and scored, and the baselines.
The stages (data, train, evaluate, gates, export, report) stay the same for every task.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from tuneproof.data.prepare import PreparedData, TargetCheck, categorical_target
from tuneproof.evaluate.baselines import majority_probs, tfidf_logreg_probs
from tuneproof.evaluate.classification import column_slices, evaluate_classification, length_slices
from tuneproof.evaluate.cluster_bootstrap import cluster_codes
from tuneproof.protocol.schema import Protocol
from tuneproof.tasks._inference import predict_rows
from tuneproof.tasks._single_label import format_prediction, prediction_frame, validation_scores
from tuneproof.tasks.base import Baselines, TaskEnv
from tuneproof.tasks.encoder import EncoderTask
from tuneproof.tasks.spec import TaskSpec
from tuneproof.train.imbalance_auto import decide
from tuneproof.train.loop import LossFn
from tuneproof.train.model_source import ModelRef

SPEC = TaskSpec(
    name="classification",
    purpose="assigns one label to each text",
    baselines=("majority", "tfidf_logreg"),
    default_baselines=("majority", "tfidf_logreg"),
    selection_metrics=("macro_f1", "accuracy", "loss"),
    stratify=True,
    options=(
        "data.labels",
        "data.label_column",
        "train.label_smoothing",
        "imbalance.oversample",
        "imbalance.class_weights",
        "evaluate.cluster_by",
        "evaluate.gate_family",
        "evaluate.interval",
        "calibration",
        "cleaning.label_errors",
        "train.setfit",
        "evaluate.learning_curve",
    ),
    report_sections=("learning_curve",),
    pipeline_tag="text-classification",
)


class ClassificationTask(EncoderTask):
    spec = SPEC

    def __init__(self, protocol: Protocol, env: TaskEnv | None = None) -> None:
        super().__init__(protocol, env)
        self.labels = list(protocol.data.labels or [])
        # Set by the runner when protocol.calibration is used: the fitted temperature, and the test
        # probabilities before it was applied (for the before/after comparison in the evaluation).
        self.temperature: float | None = None
        self.uncalibrated: np.ndarray | None = None

    # -- data ------------------------------------------------------------------------------------
    def target_check(self) -> TargetCheck:
        return categorical_target(self.protocol.data.labels)

    def set_labels(self, prepared: PreparedData) -> None:
        if not self.labels:
            self.labels = sorted(set(prepared.splits["train"]["label"]))

    def features(self, df: pd.DataFrame, tokenizer: Any, cache_dir: Path | None) -> list[dict[str, Any]]:
        label2id = {lab: i for i, lab in enumerate(self.labels)}
        return self.text_features(
            df,
            tokenizer,
            cache_dir,
            ("label", df["label"].tolist()),
            lambda labels: [label2id.get(lab, -1) for lab in labels],
            ",".join(self.labels),
        )

    # -- model -----------------------------------------------------------------------------------
    def build_model(self, ref: ModelRef) -> nn.Module:
        return self.load_head_model(
            ref,
            num_labels=len(self.labels),
            id2label=dict(enumerate(self.labels)),
            label2id={lab: i for i, lab in enumerate(self.labels)},
        )

    def metric_names(self) -> list[str]:
        from tuneproof.evaluate.classification import classification_metric_names

        return classification_metric_names(self.protocol.data.labels)

    def loss_fn(self, train_features: list[dict[str, Any]]) -> LossFn:
        weight = None
        if self.imbalance_strategy(train_features) == "class_weights":
            weight = torch.tensor(self.class_weights(train_features), dtype=torch.float32)
        ce = nn.CrossEntropyLoss(
            weight=weight, reduction="sum", label_smoothing=self.protocol.train.label_smoothing
        )

        def loss(model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"]
            if weight is not None:
                # Weighted CE is normalised by total weight, which accumulation must see step-wide;
                # scaling each example's loss by its weight keeps the sum/count contract instead.
                per = nn.functional.cross_entropy(
                    logits.float(),
                    labels,
                    reduction="none",
                    label_smoothing=self.protocol.train.label_smoothing,
                )
                return (per * weight.to(per.device)[labels]).sum(), len(labels)
            return ce(logits.float(), labels), len(labels)

        return loss

    def imbalance_strategy(self, train_features: list[dict[str, Any]]) -> str:
        """The protocol's strategy, with `auto` decided on the original rows' class counts (oversampled
        copies left out, so the loss sees the decision the data report recorded)."""
        counts = Counter(
            self.labels[f["labels"]]
            for f in train_features
            if f["labels"] >= 0 and not str(f.get("row_id", "")).endswith("#dup")
        )
        return str(decide(self.protocol.imbalance, self.name, counts)["strategy"])

    def class_weights(self, train_features: list[dict[str, Any]]) -> list[float]:
        counts = Counter(f["labels"] for f in train_features)
        n, k = sum(counts.values()), len(self.labels)
        return [n / (k * counts[i]) if counts[i] else 0.0 for i in range(k)]

    def resample(self, train_features: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
        """Random oversampling of minority classes up to the majority count (train split only)."""
        if self.imbalance_strategy(train_features) != "oversample":
            return train_features
        rng = np.random.default_rng(seed)
        by_class: dict[int, list[int]] = {}
        for i, f in enumerate(train_features):
            by_class.setdefault(f["labels"], []).append(i)
        target = max(len(v) for v in by_class.values())
        extra: list[dict[str, Any]] = []
        for _cls, idx in sorted(by_class.items()):
            for j in rng.choice(idx, size=target - len(idx), replace=True):
                extra.append({**train_features[j], "row_id": f"{train_features[j]['row_id']}#dup"})
        return train_features + extra

    # -- inference and evaluation ----------------------------------------------------------------
    def predict(
        self, model: nn.Module, features: list[dict[str, Any]], pad_id: int, batch_size: int, precision: str
    ) -> np.ndarray:
        """Probabilities in the order of ``features`` (batches are length-sorted, then restored)."""
        return predict_rows(
            model, features, pad_id, batch_size, precision, len(self.labels), lambda t: torch.softmax(t, -1)
        )

    def validation_metrics(
        self, model: nn.Module, features: list[dict[str, Any]], pad_id: int, batch_size: int, precision: str
    ) -> dict[str, float]:
        probs = self.predict(model, features, pad_id, batch_size, precision)
        return validation_scores(probs, np.array([f["labels"] for f in features]))

    def baselines(
        self, prepared: PreparedData, test: pd.DataFrame, device: torch.device | None = None
    ) -> Baselines:
        train = prepared.splits["train"]
        label2id = {lab: i for i, lab in enumerate(self.labels)}
        y_train = np.array([label2id[x] for x in train["label"]])
        out: dict[str, np.ndarray] = {}
        k = len(self.labels)
        for name in self.protocol.evaluate.baselines:
            if name == "majority":
                out[name] = majority_probs(y_train, len(test), k)
            elif name == "tfidf_logreg":
                out[name] = tfidf_logreg_probs(
                    train["text"].tolist(), y_train, test["text"].tolist(), k, self.protocol.seed
                )
        return Baselines(out)

    def evaluate(
        self,
        test: pd.DataFrame,
        probs: np.ndarray,
        baselines: dict[str, np.ndarray],
        validation: dict[str, Any] | None,
    ) -> dict[str, Any]:
        label2id = {lab: i for i, lab in enumerate(self.labels)}
        y = np.array([label2id[x] for x in test["label"]])
        slices: dict[str, np.ndarray] = {}
        for s in self.protocol.evaluate.slices:
            if s.by == "length":
                slices.update(length_slices(test["text"].tolist(), s.edges))
            else:
                slices.update(column_slices(test[s.column].tolist(), s.column))
        column = self.protocol.evaluate.cluster_by
        return evaluate_classification(
            y,
            probs,
            baselines,
            self.labels,
            self.protocol.evaluate,
            self.protocol.seed,
            slices or None,
            validation,
            clusters=cluster_codes(test[column].tolist()) if column is not None else None,
            gates=self.protocol.gates,
            uncalibrated=self.uncalibrated,
            temperature=self.temperature,
        )

    def prediction_frame(self, df: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
        return prediction_frame(self.labels, df, probs)

    def format_prediction(self, probs: np.ndarray) -> list[dict[str, Any]]:
        return format_prediction(self.labels, probs)
