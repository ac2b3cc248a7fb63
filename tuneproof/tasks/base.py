"""What a task module provides to the stages. A new task is a new module implementing this."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from typing import Protocol as TypingProtocol

import numpy as np
import pandas as pd
from torch import nn

from tuneproof.data.prepare import PreparedData, TargetCheck
from tuneproof.train.loop import Batch, LossFn
from tuneproof.train.model_source import ModelRef


class Task(TypingProtocol):
    name: str
    selection_metric: str
    stratify: bool
    labels: list[str]

    def target_check(self) -> TargetCheck: ...
    def set_labels(self, prepared: PreparedData) -> None: ...
    def features(self, df: pd.DataFrame, tokenizer: Any, cache_dir: Path | None) -> list[dict[str, Any]]: ...
    def collate(self, pad_id: int) -> Any: ...
    def build_model(self, ref: ModelRef) -> nn.Module: ...
    def peft_task_type(self) -> str: ...
    def loss_fn(self, train_features: list[dict[str, Any]]) -> LossFn: ...
    def resample(self, train_features: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]: ...
    def validation_metrics(
        self, model: nn.Module, features: list[dict[str, Any]], pad_id: int, batch_size: int, precision: str
    ) -> dict[str, float]: ...
    def predict(
        self, model: nn.Module, features: list[dict[str, Any]], pad_id: int, batch_size: int, precision: str
    ) -> np.ndarray: ...
    def baselines(self, prepared: PreparedData, test: pd.DataFrame) -> dict[str, np.ndarray]: ...
    def evaluate(
        self,
        test: pd.DataFrame,
        outputs: np.ndarray,
        baselines: dict[str, np.ndarray],
        validation: dict[str, Any] | None,
    ) -> dict[str, Any]: ...
    def format_prediction(self, outputs: np.ndarray) -> list[dict[str, Any]]: ...
    def prediction_frame(self, df: pd.DataFrame, outputs: np.ndarray) -> pd.DataFrame: ...


def get_task(protocol: Any) -> Task:
    """The task module for ``protocol.task``; only tuneproof's own modules are ever imported."""
    from importlib import import_module

    modules = {
        "classification": ("tuneproof.tasks.classification", "ClassificationTask"),
        "token_classification": ("tuneproof.tasks.token_classification", "TokenClassificationTask"),
        "regression": ("tuneproof.tasks.regression", "RegressionTask"),
        "multilabel": ("tuneproof.tasks.multilabel", "MultilabelTask"),
        "sft": ("tuneproof.tasks.sft", "SftTask"),
        "dapt": ("tuneproof.tasks.dapt", "DaptTask"),
        "seq2seq": ("tuneproof.tasks.seq2seq", "Seq2SeqTask"),
    }
    if protocol.task not in modules:
        from tuneproof.errors import Problem, ProtocolError

        raise ProtocolError([Problem("task", f"task {protocol.task!r} is not available in this version")])
    mod, cls = modules[protocol.task]
    return getattr(import_module(mod), cls)(protocol)


__all__ = ["Batch", "Task", "get_task"]
