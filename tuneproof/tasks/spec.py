"""What a task says about itself: the metadata the schema, the registry, the report and the model card read.

This module imports nothing from tuneproof, so the protocol schema can depend on it without depending
on the task implementations (which themselves depend on the schema).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    name: str
    purpose: str  # one sentence for the model card: what the model does
    baselines: tuple[str, ...]  # the baselines that apply; `evaluate.baselines` may list only these
    default_baselines: tuple[str, ...]  # used when a protocol names none
    # Validation metrics early stopping and search may select on; the first is the default.
    selection_metrics: tuple[str, ...]
    stratify: bool  # split stratified on the label
    # Language models keep activations for every token of long rows (SmolLM2 SFT at 8 x 512 tokens:
    # 8.2 GB peak without checkpointing); TRL checkpoints by default for the same reason.
    gradient_checkpointing: bool = False
    generative: bool = False  # scored against the base model it started from; no `head` method
    label_column_default: str | None = "label"  # chat messages and raw text carry no target column
    options: tuple[str, ...] = ()  # task-only protocol settings this task accepts (e.g. "data.tag_scheme")
    report_sections: tuple[str, ...] = ()  # ids of the task's own report sections, in page order
    pipeline_tag: str | None = None  # the Hugging Face Hub's name for what the model does
    # `precision: auto` times fp32/bf16 x NCHW/channels-last on the model instead of trusting the CPU
    # flags (train/precision_probe.py): convnets do not gain from bf16 as transformers do.
    precision_probe: bool = False

    def __post_init__(self) -> None:
        if not self.selection_metrics:
            raise ValueError(f"task {self.name!r} needs at least one selection metric")
        if not set(self.default_baselines) <= set(self.baselines):
            raise ValueError(f"task {self.name!r}: default baselines must be among its baselines")

    @property
    def default_selection_metric(self) -> str:
        return self.selection_metrics[0]
