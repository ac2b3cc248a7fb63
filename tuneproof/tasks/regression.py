"""Regression (one real-valued score per text) as a task module.

The model learns the standardised target (train mean 0, standard deviation 1) with a mean squared
error loss: a freshly initialised head starts near zero, so standardising keeps the first steps sane
whatever the target's scale. The mean and standard deviation are stored in the model config so a
packaged model predicts on the original scale. Every reported metric is on the original scale.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from tuneproof.data.prepare import PreparedData, TargetCheck
from tuneproof.evaluate.regression import evaluate_regression, regression_metric_names
from tuneproof.protocol.schema import Protocol
from tuneproof.tasks._inference import config_value, predict_rows
from tuneproof.tasks.base import Baselines, TaskEnv
from tuneproof.tasks.encoder import EncoderTask
from tuneproof.tasks.spec import TaskSpec
from tuneproof.train.loop import LossFn
from tuneproof.train.model_source import ModelRef

CONFIG_KEY = "tuneproof_target"  # {"mean", "std"} of the training target, in the model config
# Fixed, like the classification baseline's C: cheap, and never tuned on anything but training data.
RIDGE_ALPHA = 1.0
_MIN_DF_2_FROM = 1000


def numeric_target(value: Any) -> tuple[float | None, str | None]:
    """A finite number; numeric strings (CSV) are parsed, booleans are refused as ambiguous."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None, "missing target value"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None, f"target must be a number, got {type(value).__name__}"
    try:
        number = float(value)
    except ValueError:
        return None, f"target {value!r} is not a number"
    if not math.isfinite(number):
        return None, f"target must be finite, got {value!r}"
    return number, None


SPEC = TaskSpec(
    name="regression",
    purpose="predicts a number for each text",
    baselines=("mean", "tfidf_ridge"),
    default_baselines=("mean", "tfidf_ridge"),
    selection_metrics=("rmse", "mae", "mse", "r2", "spearman", "loss"),
    stratify=False,
    options=("data.label_column",),
    report_sections=("residuals",),
    pipeline_tag="text-classification",  # the Hub files a one-output regression head here too
)


class RegressionTask(EncoderTask):
    spec = SPEC

    def __init__(self, protocol: Protocol, env: TaskEnv | None = None) -> None:
        super().__init__(protocol, env)
        self.mean, self.std = 0.0, 1.0

    # -- data ------------------------------------------------------------------------------------
    def target_check(self) -> TargetCheck:
        return numeric_target

    def set_labels(self, prepared: PreparedData) -> None:
        y = prepared.splits["train"]["label"].to_numpy(dtype=np.float64)
        self.mean = float(y.mean())
        # A constant target cannot be standardised; 1.0 leaves it as it is.
        self.std = float(y.std()) or 1.0

    def features(self, df: pd.DataFrame, tokenizer: Any, cache_dir: Path | None) -> list[dict[str, Any]]:
        mean, std = self.mean, self.std
        return self.text_features(
            df,
            tokenizer,
            cache_dir,
            ("label", df["label"].astype(float).tolist()),
            lambda values: [(float(v) - mean) / std for v in values],
            f"{mean!r},{std!r}",
        )

    # -- model -----------------------------------------------------------------------------------
    def build_model(self, ref: ModelRef) -> nn.Module:
        model = self.load_head_model(ref, num_labels=1, problem_type="regression")
        setattr(model.config, CONFIG_KEY, {"mean": self.mean, "std": self.std})
        return model

    def load_packaged(self, model_dir: Path) -> nn.Module:
        model = super().load_packaged(model_dir)
        scale = config_value(model, CONFIG_KEY) or {"mean": 0.0, "std": 1.0}
        self.mean, self.std = float(scale["mean"]), float(scale["std"])
        return model

    def metric_names(self) -> list[str]:
        return regression_metric_names()

    def loss_fn(self, train_features: list[dict[str, Any]]) -> LossFn:
        def loss(model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            target = batch["labels"].float()
            return ((out.float().squeeze(-1) - target) ** 2).sum(), len(target)

        return loss

    # -- inference and evaluation ----------------------------------------------------------------
    def predict(
        self, model: nn.Module, features: list[dict[str, Any]], pad_id: int, batch_size: int, precision: str
    ) -> np.ndarray:
        """Scores on the original scale, in the order of ``features``."""
        z = predict_rows(model, features, pad_id, batch_size, precision, 1, lambda t: t[:, :1])
        return z[:, 0] * self.std + self.mean

    def validation_metrics(
        self, model: nn.Module, features: list[dict[str, Any]], pad_id: int, batch_size: int, precision: str
    ) -> dict[str, float]:
        from scipy.stats import spearmanr

        pred = self.predict(model, features, pad_id, batch_size, precision)
        y = np.array([f["labels"] for f in features]) * self.std + self.mean
        err = pred - y
        sst = float(((y - y.mean()) ** 2).sum())
        rho = spearmanr(y, pred).statistic if np.ptp(pred) > 0 and np.ptp(y) > 0 else float("nan")
        return {
            "loss": float(
                np.mean((err / self.std) ** 2)
            ),  # the training loss: MSE of the standardised target
            "mse": float(np.mean(err**2)),
            "rmse": float(np.sqrt(np.mean(err**2))),
            "mae": float(np.mean(np.abs(err))),
            "r2": float(1 - (err**2).sum() / sst) if sst > 0 else float("nan"),
            "spearman": float(rho),
        }

    def baselines(
        self, prepared: PreparedData, test: pd.DataFrame, device: torch.device | None = None
    ) -> Baselines:
        train = prepared.splits["train"]
        y = train["label"].to_numpy(dtype=np.float64)
        out: dict[str, np.ndarray] = {}
        for name in self.protocol.evaluate.baselines:
            if name == "mean":
                out[name] = np.full(len(test), y.mean())
            elif name == "tfidf_ridge":
                out[name] = tfidf_ridge(train["text"].tolist(), y, test["text"].tolist())
        return Baselines(out)

    def evaluate(
        self,
        test: pd.DataFrame,
        outputs: np.ndarray,
        baselines: dict[str, np.ndarray],
        validation: dict[str, Any] | None,
    ) -> dict[str, Any]:
        slices = self.test_slices(test)
        y = test["label"].to_numpy(dtype=np.float64)
        return evaluate_regression(
            y, outputs, baselines, self.protocol.evaluate, self.protocol.seed, slices or None, validation
        )

    def prediction_frame(self, df: pd.DataFrame, outputs: np.ndarray) -> pd.DataFrame:
        y = df["label"].to_numpy(dtype=np.float64)
        return pd.DataFrame(
            {"row_id": df["row_id"].to_numpy(), "label": y, "pred": outputs, "error": outputs - y}
        )

    def format_prediction(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        return [{"score": round(float(v), 6)} for v in outputs]


def tfidf_ridge(train_texts: list[str], y: np.ndarray, test_texts: list[str]) -> np.ndarray:
    """Word 1-2 gram TF-IDF (sublinear tf) into ridge regression, fitted on the training split only."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import Ridge

    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2), sublinear_tf=True, min_df=2 if len(train_texts) >= _MIN_DF_2_FROM else 1
    )
    x = vectorizer.fit_transform(train_texts)
    model = Ridge(alpha=RIDGE_ALPHA).fit(x, y)
    return (
        np.asarray(model.predict(vectorizer.transform(test_texts)), dtype=np.float64)
        if test_texts
        else np.zeros(0)
    )
