"""Multi-label classification (any number of labels per text) as a task module.

One sigmoid output per label with binary cross-entropy. Each label's decision threshold is tuned on
the validation split (the F1-maximising cut-off) when the runner scores the final model there, and
stored in the model config so the packaged model decides the same way. The test split only ever
sees fixed thresholds. Without a validation split every threshold stays 0.5, and metrics.json says so.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from tuneproof.data.prepare import PreparedData
from tuneproof.evaluate.multilabel import (
    DEFAULT_THRESHOLD,
    decide,
    evaluate_multilabel,
    multilabel_metric_names,
    tune_thresholds,
)
from tuneproof.protocol.schema import Protocol
from tuneproof.tasks._inference import config_value, predict_rows
from tuneproof.tasks.base import Baselines, TaskEnv
from tuneproof.tasks.encoder import EncoderTask
from tuneproof.tasks.spec import TaskSpec
from tuneproof.train.loop import LossFn
from tuneproof.train.model_source import ModelRef

CONFIG_KEY = "tuneproof_thresholds"  # {label: threshold}, in the model config
TFIDF_C = 4.0  # as the classification baseline: fixed, fitted on training data only
_MIN_DF_2_FROM = 1000


class _LabelSetCheck:
    """A set of labels per row: a JSON list, or one CSV field split on ``data.label_separator``.

    An empty list (or empty field) is a valid row with no label; duplicates are merged.
    """

    def __init__(self, allowed: list[str] | None, separator: str | None) -> None:
        self.allowed = allowed
        self.separator = separator

    def __call__(self, value: Any) -> tuple[list[str] | None, str | None]:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None, "missing labels (use [] or an empty field for a text with no label)"
        if isinstance(value, str):
            if self.separator is None:
                if value.strip().startswith("["):
                    return (
                        None,
                        "labels look like a JSON list inside a text field; use JSONL or data.label_separator",
                    )
                return None, "labels are a string; set data.label_separator (e.g. ';') to split it"
            items: list[Any] = value.split(self.separator) if value.strip() else []
        elif isinstance(value, list | tuple):
            items = list(value)
        else:
            return (
                None,
                f"labels must be a list (JSONL) or a delimited string (CSV), got {type(value).__name__}",
            )
        labels: set[str] = set()
        for item in items:
            if isinstance(item, dict | list) or item is None:
                return None, f"each label must be a single value, got {type(item).__name__}"
            label = str(item).strip()
            if not label:
                return None, f"empty label in {value!r}"
            if self.allowed is not None and label not in self.allowed:
                return None, f"unknown label {label!r} (allowed: {', '.join(self.allowed)})"
            labels.add(label)
        return sorted(labels), None


SPEC = TaskSpec(
    name="multilabel",
    purpose="assigns any number of labels to each text",
    baselines=("majority", "tfidf_logreg"),
    default_baselines=("majority", "tfidf_logreg"),
    # loss first, threshold-free: F1 with thresholds tuned on the very validation split it is measured
    # on favours a model whose probabilities are nearly constant and whose thresholds fit the noise.
    selection_metrics=("loss", "micro_f1", "macro_f1", "subset_accuracy"),
    stratify=False,
    options=(
        "data.labels",
        "data.label_column",
        "data.label_separator",
        "imbalance.class_weights",
        "cleaning.label_errors",
        "train.setfit",
    ),
    report_sections=("thresholds",),
    pipeline_tag="text-classification",
)


class MultilabelTask(EncoderTask):
    spec = SPEC

    def __init__(self, protocol: Protocol, env: TaskEnv | None = None) -> None:
        super().__init__(protocol, env)
        self.labels = list(protocol.data.labels or [])
        self.thresholds = np.full(len(self.labels), DEFAULT_THRESHOLD)
        self.tuned_on: str | None = None

    # -- data ------------------------------------------------------------------------------------
    def target_check(self) -> _LabelSetCheck:
        return _LabelSetCheck(self.protocol.data.labels, self.protocol.data.label_separator)

    def set_labels(self, prepared: PreparedData) -> None:
        if not self.labels:
            # Every split's labels: a label that occurs only in the test split must still count as
            # missed, not vanish from the evaluation.
            self.labels = sorted(
                {lab for df in prepared.splits.values() for row in df["label"] for lab in row}
            )
        self.thresholds = np.full(len(self.labels), DEFAULT_THRESHOLD)

    def multi_hot(self, rows: Any) -> np.ndarray:
        col = {lab: j for j, lab in enumerate(self.labels)}
        out = np.zeros((len(rows), len(self.labels)), dtype=np.int8)
        for i, row in enumerate(rows):
            for lab in row:
                out[i, col[lab]] = 1
        return out

    def features(self, df: pd.DataFrame, tokenizer: Any, cache_dir: Path | None) -> list[dict[str, Any]]:
        target = self.multi_hot(list(df["label"])).astype(np.float32).tolist()
        return self.text_features(
            df, tokenizer, cache_dir, ("target", target), lambda rows: rows, "\x1e".join(self.labels)
        )

    # -- model -----------------------------------------------------------------------------------
    def build_model(self, ref: ModelRef) -> nn.Module:
        return self.load_head_model(
            ref,
            num_labels=len(self.labels),
            problem_type="multi_label_classification",
            id2label=dict(enumerate(self.labels)),
            label2id={lab: i for i, lab in enumerate(self.labels)},
        )

    def load_packaged(self, model_dir: Path) -> nn.Module:
        model = super().load_packaged(model_dir)
        stored = config_value(model, CONFIG_KEY) or {}
        self.thresholds = np.array([float(stored.get(lab, DEFAULT_THRESHOLD)) for lab in self.labels])
        return model

    def metric_names(self) -> list[str]:
        return multilabel_metric_names(self.protocol.data.labels)

    def pos_weight(self, train_features: list[dict[str, Any]]) -> torch.Tensor:
        """Negatives over positives per label (the usual BCE re-weighting); 1 where a label never occurs."""
        y = np.array([f["labels"] for f in train_features], dtype=np.float64)
        pos = y.sum(axis=0)
        return torch.tensor(np.where(pos > 0, (len(y) - pos) / np.maximum(pos, 1), 1.0), dtype=torch.float32)

    def loss_fn(self, train_features: list[dict[str, Any]]) -> LossFn:
        weight = (
            self.pos_weight(train_features) if self.protocol.imbalance.strategy == "class_weights" else None
        )

        def loss(model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
            logits = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
            ).logits.float()
            target = batch["labels"].float()
            per = nn.functional.binary_cross_entropy_with_logits(
                logits,
                target,
                reduction="none",
                pos_weight=None if weight is None else weight.to(logits.device),
            )
            # One term per text (its mean over labels), matching the collate's count of texts.
            return per.mean(dim=1).sum(), len(target)

        return loss

    # -- inference and evaluation ----------------------------------------------------------------
    def predict(
        self, model: nn.Module, features: list[dict[str, Any]], pad_id: int, batch_size: int, precision: str
    ) -> np.ndarray:
        """Per-label probabilities ``[n, k]`` in the order of ``features``."""
        return predict_rows(model, features, pad_id, batch_size, precision, len(self.labels), torch.sigmoid)

    def validation_metrics(
        self, model: nn.Module, features: list[dict[str, Any]], pad_id: int, batch_size: int, precision: str
    ) -> dict[str, float]:
        """Tune the thresholds on these (validation) features, store them, and score with them.

        The runner calls this on the final model right before it predicts the test split, so the
        thresholds the test split is scored with are the ones tuned here, on validation only.
        """
        probs = self.predict(model, features, pad_id, batch_size, precision)
        y = np.array([f["labels"] for f in features], dtype=np.int8).reshape(len(features), len(self.labels))
        self.thresholds, _ = tune_thresholds(probs, y)
        self.tuned_on = "validation"
        config = getattr(model, "config", None)
        if config is not None:
            setattr(config, CONFIG_KEY, dict(zip(self.labels, map(float, self.thresholds), strict=True)))
        pred = decide(probs, self.thresholds).astype(bool)
        yb = y.astype(bool)
        tp, fp, fn = (yb & pred).sum(0), (~yb & pred).sum(0), (yb & ~pred).sum(0)
        den = 2 * tp + fp + fn
        present = den > 0
        bce = -(y * np.log(np.clip(probs, 1e-12, 1)) + (1 - y) * np.log(np.clip(1 - probs, 1e-12, 1)))
        return {
            "loss": float(bce.mean()),
            "micro_f1": float(2 * tp.sum() / den.sum()) if den.sum() else 0.0,
            "macro_f1": float((2 * tp[present] / den[present]).mean()) if present.any() else 0.0,
            "subset_accuracy": float(np.all(pred == yb, axis=1).mean()),
        }

    def baselines(
        self, prepared: PreparedData, test: pd.DataFrame, device: torch.device | None = None
    ) -> Baselines:
        train = prepared.splits["train"]
        y_train = self.multi_hot(list(train["label"]))
        val = prepared.splits.get("validation")
        val = val if val is not None and len(val) else None
        out: dict[str, np.ndarray] = {}
        for name in self.protocol.evaluate.baselines:
            if name == "majority":
                out[name] = np.tile((y_train.mean(axis=0) > 0.5).astype(np.int8), (len(test), 1))
            elif name == "tfidf_logreg":
                texts = [test["text"].tolist()] + ([val["text"].tolist()] if val is not None else [])
                probs = tfidf_ovr_probs(train["text"].tolist(), y_train, texts, self.protocol.seed)
                # The baseline gets the same treatment as the model: thresholds tuned on validation.
                thresholds = np.full(len(self.labels), DEFAULT_THRESHOLD)
                if val is not None:
                    thresholds = tune_thresholds(probs[1], self.multi_hot(list(val["label"])))[0]
                out[name] = decide(probs[0], thresholds)
        return Baselines(out)

    def evaluate(
        self,
        test: pd.DataFrame,
        outputs: np.ndarray,
        baselines: dict[str, np.ndarray],
        validation: dict[str, Any] | None,
    ) -> dict[str, Any]:
        slices = self.test_slices(test)
        thresholds = {
            "values": self.thresholds.tolist(),
            "tuned_on": self.tuned_on,
            "rule": "per-label F1-maximising cut-off on the validation split"
            if self.tuned_on
            else "no validation split: 0.5 for every label",
        }
        return evaluate_multilabel(
            self.multi_hot(list(test["label"])),
            decide(outputs, self.thresholds),
            baselines,
            self.labels,
            self.protocol.evaluate,
            self.protocol.seed,
            thresholds,
            slices or None,
            validation,
        )

    def prediction_frame(self, df: pd.DataFrame, outputs: np.ndarray) -> pd.DataFrame:
        pred = decide(outputs, self.thresholds)
        out = pd.DataFrame(
            {
                "row_id": df["row_id"].to_numpy(),
                "label": [list(x) for x in df["label"]],
                "pred": [[lab for lab, on in zip(self.labels, row, strict=True) if on] for row in pred],
            }
        )
        for j, lab in enumerate(self.labels):
            out[f"prob_{lab}"] = outputs[:, j]
        return out

    def format_prediction(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        pred = decide(outputs, self.thresholds)
        return [
            {
                "labels": [lab for lab, on in zip(self.labels, row, strict=True) if on],
                "probabilities": {lab: round(float(v), 6) for lab, v in zip(self.labels, p, strict=True)},
            }
            for row, p in zip(pred, outputs, strict=True)
        ]


def tfidf_ovr_probs(
    train_texts: list[str], y: np.ndarray, texts: list[list[str]], seed: int
) -> list[np.ndarray]:
    """One-vs-rest logistic regression on word 1-2 gram TF-IDF; probabilities ``[n, k]`` for each list of
    ``texts``. A label that is always on or always off in training gets its training frequency."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2), sublinear_tf=True, min_df=2 if len(train_texts) >= _MIN_DF_2_FROM else 1
    )
    x = vectorizer.fit_transform(train_texts)
    xs = [vectorizer.transform(t) for t in texts]
    out = [np.zeros((len(t), y.shape[1])) for t in texts]
    for j in range(y.shape[1]):
        if y[:, j].min() == y[:, j].max():
            for o in out:
                o[:, j] = y[:, j].mean()
            continue
        clf = LogisticRegression(C=TFIDF_C, max_iter=2000, random_state=seed).fit(x, y[:, j])
        for o, xt in zip(out, xs, strict=True):
            o[:, j] = clf.predict_proba(xt)[:, 1]
    return out
