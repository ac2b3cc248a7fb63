"""The task contract: everything the stages call on a task, with explicit defaults for the optional hooks.

A new task is a new module with a subclass of :class:`Task` (its metadata in ``spec``) plus one line
in :mod:`tuneproof.tasks.registry`. Callers never probe a task with ``hasattr``: every method they
use is declared here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from tuneproof.data.prepare import FrameHook, PreparedData, TargetCheck, prepare_data
from tuneproof.protocol.schema import Protocol
from tuneproof.tasks.spec import TaskSpec
from tuneproof.train.loop import Batch, LossFn
from tuneproof.train.model_source import ModelRef, load_tokenizer

Features = list[dict[str, Any]]
TokenLengths = Callable[[list[str]], list[int]]
# (training features of one micro-batch, epoch) -> the same features as the model sees them
Augment = Callable[[list[dict[str, Any]], int], list[dict[str, Any]]]


@dataclass(frozen=True)
class TaskEnv:
    """What a task needs beyond its protocol, handed in once by whoever builds it (the run context,
    the predictor) and never picked up from an earlier call: the tokenizer generation decodes with,
    the base model a baseline reloads, the precision it scores in, and the features cache."""

    tokenizer: Any = None
    ref: ModelRef | None = None
    precision: str = "fp32"
    cache_dir: Path | None = None


@dataclass
class Baselines:
    """Each baseline's outputs on the test rows, and its validation metrics where it has any (the
    generative tasks' base model is scored on the validation split too)."""

    outputs: dict[str, np.ndarray]
    validation: dict[str, dict[str, float]] = field(default_factory=dict)


class Task(ABC):
    spec: ClassVar[TaskSpec]
    # True where ``predict`` runs every forward through ``logits_batches`` under autocast, so a served
    # model may keep its Linear weights in bf16 (``bf16_linear_weights``) with the same outputs.
    predicts_under_autocast: ClassVar[bool] = False

    def __init__(self, protocol: Protocol, env: TaskEnv | None = None) -> None:
        self.protocol = protocol
        self.env = env or TaskEnv()
        self.labels: list[str] = []

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def stratify(self) -> bool:
        return self.spec.stratify

    @property
    def selection_metric(self) -> str:
        return self.spec.default_selection_metric

    # -- data ------------------------------------------------------------------------------------
    @abstractmethod
    def target_check(self) -> TargetCheck:
        """Validates (and normalises) one row's target; the data stage reports what it refuses."""

    def set_labels(self, prepared: PreparedData) -> None:
        """Learn what the target space is from the prepared splits (labels, scale); none by default."""
        return None

    def prepare_data(
        self, base_dir: Path, token_lengths: TokenLengths | None = None, text_hook: FrameHook | None = None
    ) -> PreparedData:
        """The data stage for this task; texts by default (tasks on other inputs bring their own)."""
        return prepare_data(
            self.protocol,
            base_dir,
            token_lengths=token_lengths,
            target_check=self.target_check(),
            text_hook=text_hook,
            stratify=self.stratify,
        )

    @classmethod
    def load_preprocessor(cls, protocol: Protocol, ref: ModelRef) -> Any:
        """What turns inputs into model features for the base model: its tokenizer by default."""
        return load_tokenizer(ref)

    @classmethod
    def load_packaged_preprocessor(cls, model_dir: Path) -> Any:
        """The preprocessor packaged beside a run's model (``predict``, ``serve``)."""
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model_dir)

    def use_base_dir(self, base_dir: Path) -> None:
        """Resolve further files the protocol names relative to its folder; none by default."""
        return None

    def token_lengths(self, tokenizer: Any) -> TokenLengths | None:
        """Token counts for the data report, where the text is structured (chat messages as JSON);
        None: the runner counts the plain text's tokens."""
        return None

    @abstractmethod
    def features(self, df: pd.DataFrame, tokenizer: Any, cache_dir: Path | None) -> Features: ...

    @abstractmethod
    def features_for_inference(self, df: pd.DataFrame, tokenizer: Any) -> Features:
        """Features of unlabelled texts (``predict``, ``serve``)."""

    @abstractmethod
    def collate(self, pad_id: int) -> Callable[[Features], Batch]: ...

    # -- model -----------------------------------------------------------------------------------
    @abstractmethod
    def build_model(self, ref: ModelRef) -> nn.Module: ...

    @abstractmethod
    def load_packaged(self, model_dir: Path) -> nn.Module: ...

    @abstractmethod
    def peft_task_type(self) -> str | None: ...

    def lora_modules(
        self, model: nn.Module, targets: list[str] | str
    ) -> tuple[list[str] | str, list[str] | None]:
        """(target_modules, modules_to_save) for PEFT's LoraConfig: by default the protocol's
        targets, and PEFT's own choice of what its task type trains in full (the head)."""
        return targets, None

    # -- training --------------------------------------------------------------------------------
    @abstractmethod
    def loss_fn(self, train_features: Features) -> LossFn: ...

    def feature_length(self, feature: dict[str, Any]) -> int:
        """The size a training example costs, for length-grouped batches: its token count by default."""
        return len(feature["input_ids"])

    def train_augment(self, seed: int) -> Augment | None:
        """A pure function of (features, epoch) applied to each training micro-batch; none by default."""
        return None

    def resample(self, train_features: Features, seed: int) -> Features:
        """The training rows as the loop sees them (oversampled, packed); unchanged by default."""
        return train_features

    # -- inference and evaluation ----------------------------------------------------------------
    @abstractmethod
    def metric_names(self) -> list[str]:
        """Every metric name a gate may use for this task and protocol."""

    @abstractmethod
    def validation_metrics(
        self, model: nn.Module, features: Features, pad_id: int, batch_size: int, precision: str
    ) -> dict[str, float]: ...

    @abstractmethod
    def predict(
        self, model: nn.Module, features: Features, pad_id: int, batch_size: int, precision: str
    ) -> np.ndarray: ...

    @abstractmethod
    def baselines(
        self, prepared: PreparedData, test: pd.DataFrame, device: torch.device | None = None
    ) -> Baselines:
        """The protocol's baselines on the test rows; ``device`` is where the fine-tuned model ran."""

    @abstractmethod
    def evaluate(
        self,
        test: pd.DataFrame,
        outputs: np.ndarray,
        baselines: dict[str, np.ndarray],
        validation: dict[str, Any] | None,
    ) -> dict[str, Any]: ...

    def evaluation_notes(self, features: Mapping[str, Features]) -> dict[str, Any]:
        """Further ``metrics.json`` entries computed from the splits' features (before resampling),
        such as what truncation cut; none by default."""
        return {}

    @abstractmethod
    def format_prediction(self, outputs: np.ndarray) -> list[dict[str, Any]]: ...

    @abstractmethod
    def prediction_frame(self, df: pd.DataFrame, outputs: np.ndarray) -> pd.DataFrame: ...


__all__ = ["Augment", "Baselines", "Batch", "Features", "Task", "TaskEnv", "TokenLengths"]
