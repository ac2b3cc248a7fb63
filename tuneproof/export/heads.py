"""What an exported graph computes after the model's logits, per task: the task's own outputs.

An exported graph ends in the task's post-processing (softmax, sigmoid, the target's scale), so a
consumer with only ONNX Runtime gets probabilities or scores, not logits it must know how to read.
The table is keyed by task name here rather than in the task modules, so a task that has no
exportable head (the generative ones) simply has no row and exporting it is a clear error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from tuneproof.errors import ExportError
from tuneproof.export.info import OutputKind
from tuneproof.tasks.base import Task

Activation = Literal["softmax", "sigmoid", "scale", "identity"]


@dataclass(frozen=True)
class ExportHead:
    kind: OutputKind
    activation: Activation
    output: str  # the graph's output name


HEADS: dict[str, ExportHead] = {
    "classification": ExportHead("probabilities", "softmax", "probabilities"),
    "multilabel": ExportHead("probabilities", "sigmoid", "probabilities"),
    "regression": ExportHead("score", "scale", "score"),
    "token_classification": ExportHead("token_probabilities", "softmax", "token_probabilities"),
}


def head_for(task: Task) -> ExportHead:
    if task.name not in HEADS:
        raise ExportError(
            f"task {task.name!r} has no ONNX export; exportable tasks: {', '.join(HEADS)} "
            "(a LoRA-trained model of any task can be exported as 'merged')"
        )
    return HEADS[task.name]


class HeadModule(nn.Module):
    """The packaged model followed by the task's post-processing, with plain tensor inputs and output."""

    def __init__(self, model: nn.Module, activation: Activation, mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        self.model = model
        self.activation = activation
        self.mean, self.std = mean, std

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask).logits.float()
        if self.activation == "softmax":
            return torch.softmax(logits, dim=-1)
        if self.activation == "sigmoid":
            return torch.sigmoid(logits)
        if self.activation == "scale":  # regression learns the standardised target
            return logits[:, 0] * self.std + self.mean
        return logits


__all__ = ["HEADS", "Activation", "ExportHead", "HeadModule", "head_for"]
