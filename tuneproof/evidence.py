"""The run folder's evidence files as typed models: manifest, gate report, metrics, packaged-model info.

Each model writes the JSON layout the files have always had (same keys, same values) plus a
``schema_version``, and every reader (``show``, ``verify``, the report, ``serve``, lineage) reads the
files back through the same models, so a file that does not match is one clear
:class:`~tuneproof.errors.RunFolderError` naming the file and field instead of a ``KeyError`` later.

Keys that a run writes only when they apply (``files`` after the last hash, ``search``, a verdict's
``baseline``) are fields that default to None and are left out of the file while None, so the files
keep their exact key sets.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from tuneproof.errors import RunFolderError
from tuneproof.fsutil import atomic_write_json
from tuneproof.protocol.schema import PackageFile

# 1: the first typed layout (adds schema_version and the portable base_model record).
SCHEMA_VERSION = 1
# Files written before schema_version existed carry no such key: they are read as version 0, whose
# layout is version 1's minus schema_version, with ``base_model`` a plain string (the path or hub id
# that the training machine loaded).
LEGACY_VERSION = 0

RunStatus = Literal["running", "passed", "rejected", "failed", "interrupted"]
GateKind = Literal["min", "max", "beats", "slice_min"]
# Metric values keep the JSON type they were computed with (an int count stays an int).
Number = int | float


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


class _Record(BaseModel):
    """A part of an evidence file: unknown keys are refused, optional keys vanish while None."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
    OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit_absent(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        for key in self.OMIT_IF_NONE:
            if data.get(key, 0) is None:
                del data[key]
        return data

    def to_json(self) -> dict[str, Any]:
        # mode="python" hands the open (Any) parts back untouched, so values keep their types.
        return self.model_dump(mode="python")


class Evidence(_Record):
    """A whole evidence file: versioned, written atomically, read with errors naming the file."""

    FILE: ClassVar[str]
    schema_version: int = SCHEMA_VERSION

    def write(self, folder: Path) -> Path:
        path = folder / self.FILE
        atomic_write_json(path, self.to_json())
        return path

    @classmethod
    def from_json(cls, raw: Any, source: str) -> Self:
        if not isinstance(raw, Mapping):
            raise RunFolderError(f"{source}: expected a JSON object at the top level")
        data = dict(raw)
        data.setdefault("schema_version", LEGACY_VERSION)  # see LEGACY_VERSION
        version = data["schema_version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < LEGACY_VERSION:
            raise RunFolderError(f"{source}: schema_version must be a whole number, not {version!r}")
        if version > SCHEMA_VERSION:
            raise RunFolderError(
                f"{source}: schema_version {version} was written by a newer tuneproof; this one reads "
                f"versions up to {SCHEMA_VERSION}"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise RunFolderError(f"{source}: not a valid {cls.FILE}: {_describe(exc)}") from None

    @classmethod
    def read(cls, path: Path) -> Self:
        """The file at ``path`` (a run folder's ``FILE`` when ``path`` is a folder)."""
        if path.is_dir():
            path = path / cls.FILE
        if not path.is_file():
            raise RunFolderError(f"{path.parent} has no {path.name}")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise RunFolderError(f"{path} could not be read as JSON: {exc}") from None
        return cls.from_json(raw, str(path))


# -- the base model ---------------------------------------------------------------------------------


class BaseModelRecord(_Record):
    """Which model a run started from, portably: the protocol's ``model.source`` as written, and hashes.

    ``source`` is a hub id (with ``revision``), ``{package, path}``, or a folder as the protocol
    wrote it (relative to the protocol's folder), never a path resolved on the training machine;
    ``files`` hashes the weights and config files that were loaded, ``sha256`` all of them at once.
    """

    OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset({"revision", "gguf_file"})

    source: PackageFile | str
    revision: str | None = None
    gguf_file: str | None = None
    sha256: str | None = Field(description="digest of `files`; None when the files were not on disk")
    files: dict[str, str] = Field(default_factory=dict)


# A version-0 file holds the training machine's path or hub id as a string.
BaseModelField = BaseModelRecord | str


def base_model_source(value: BaseModelField | None) -> str:
    """The base model for people to read: the hub id, package path or folder, with its revision."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    src = value.source
    text = f"{src.package}:{src.path}" if isinstance(src, PackageFile) else src
    return f"{text}@{value.revision}" if value.revision else text


# -- manifest.json ----------------------------------------------------------------------------------


class ParentRun(_Record):
    """The earlier tuneproof run whose packaged model this run started from."""

    run: str
    manifest_sha256: str
    protocol_sha256: str | None
    task: str | None
    status: str | None
    deployable: bool | None
    base_model: BaseModelField | None
    model_files_match_manifest: bool
    lineage: dict[str, Any]


class Lineage(_Record):
    """The base model at the root of the chain of runs, and the parent run where there is one."""

    OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset({"parent"})

    base_model: BaseModelField | None
    protocol_sha256: str
    parent: ParentRun | None = None


class SearchRecord(_Record):
    study_name: str
    storage: str
    best_trial: int
    best_value: Number
    metric: str
    trials: dict[str, Any]
    finished_at: str | None


class ExportRecord(_Record):
    """One export of the run's model (``exports/<format>/``): whether it was released, why, and hashes.

    ``released`` is True only when every export gate passed on the re-evaluation of the test split;
    an export that failed is kept (for inspection) and marked, never served without being asked to.
    """

    format: str
    folder: str
    released: bool
    reason: str
    failed_gates: list[str] = Field(default_factory=list)
    files: dict[str, str]
    created_at: str


class Manifest(Evidence):
    """``manifest.json``: what a run read and wrote (hashes), where and how it ran, and its status.

    One object per run, changed only through its methods, so the status stays truthful.
    """

    FILE: ClassVar[str] = "manifest.json"
    OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset(
        {"resumed_at", "tracking", "search", "files", "exports", "privacy"}
    )

    tuneproof_version: str
    status: RunStatus
    deployable: bool
    protocol: str
    task: str
    protocol_path: str
    protocol_dir: str
    protocol_sha256: str
    inputs: dict[str, str]
    base_model: BaseModelField
    splits: dict[str, str]
    environment: dict[str, Any]
    precision_reason: str | None = None
    seed: int
    started_at: str
    finished_at: str | None = None
    # A string "Type: message"; older runs may hold a {type, message} mapping.
    error: str | dict[str, Any] | None = None
    lineage: Lineage | None = None
    processes: int = 1
    distributed: str = "single"
    resumed_at: list[str] | None = None
    tracking: dict[str, str] | None = None
    search: SearchRecord | None = None
    files: dict[str, str] | None = None
    exports: dict[str, ExportRecord] | None = None  # by format; written by the export stage
    # The DP-SGD budget the run spent (epsilon, delta, accountant, noise, clipping, sampling, steps).
    privacy: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("passed", "rejected")

    def mark_resumed(self) -> None:
        self.resumed_at = [*(self.resumed_at or []), now()]
        self.status = "running"

    def record_precision(self, precision: str, reason: str) -> None:
        """The precision training settled on after the start (the image precision probe's choice)."""
        self.environment = {**self.environment, "precision": precision}
        self.precision_reason = reason

    def record_tracking(self, status: Mapping[str, str]) -> None:
        self.tracking = dict(status)

    def record_search(self, search: SearchRecord) -> None:
        self.search = search

    def record_export(self, record: ExportRecord) -> None:
        self.exports = {**(self.exports or {}), record.format: record}

    def record_privacy(self, dp_sgd: Mapping[str, Any]) -> None:
        """The privacy guarantee of the weights this run shipped, as its accountant states it."""
        self.privacy = {"dp_sgd": dict(dp_sgd)}

    def record_files(self, files: Mapping[str, str]) -> None:
        self.files = dict(files)

    def finish(self, status: RunStatus, *, deployable: bool | None = None, error: str | None = None) -> None:
        """The run ended: passed or rejected by its gates, or failed/interrupted with ``error``."""
        self.status = status
        if deployable is not None:
            self.deployable = deployable
        if error is not None:
            self.error = error
        self.finished_at = now()


# -- gates.json -------------------------------------------------------------------------------------


class GateVerdict(_Record):
    OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset({"baseline", "undecidable", "p_value", "level"})

    gate: str
    passed: bool
    metric: str
    observed: Number | None = None
    low: Number | None = None
    high: Number | None = None
    threshold: Number | None = None
    decided_on: str
    detail: str
    kind: GateKind
    baseline: str | None = None  # "beats" gates only
    undecidable: bool | None = None  # written (as true) only when the test split is too small
    # Gates judged as a family (evaluate.gate_family): the bootstrap p-value and the level it met.
    p_value: Number | None = None
    level: Number | None = None


class GateReport(Evidence):
    """``gates.json``: every gate's verdict and whether the run passed them all."""

    FILE: ClassVar[str] = "gates.json"
    OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset({"family"})

    passed: bool
    # Names of the gates the test split was too small to decide; version-0 files written before
    # such gates existed lack the key, which means none.
    undecidable: list[str] = Field(default_factory=list)
    verdicts: list[GateVerdict]
    # How the gates were judged together: {method, confidence, gates, statement}; absent when one by one.
    family: dict[str, Any] | None = None

    @property
    def failed(self) -> list[str]:
        """Gates the model lost on (not those the test split was too small to decide)."""
        return [v.gate for v in self.verdicts if not v.passed and not v.undecidable]


# -- metrics.json -----------------------------------------------------------------------------------


class SliceResult(_Record):
    OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset({"intervals", "gated", "clusters"})

    name: str
    n: int
    metrics: dict[str, Number | None]
    # The same bootstrap as the whole split's, within the slice: {metric: {value, low, high}}.
    intervals: dict[str, dict[str, Number | None]] | None = None
    gated: bool | None = None  # False below evaluate.slice_min_rows: shown, not gated
    clusters: int | None = None


class MetricsEnvelope(Evidence):
    """``metrics.json``: the envelope every task writes, open for the parts that differ by task.

    The typed fields are what gates, the report and ``show`` rely on. ``model``, ``baselines`` and
    ``comparisons`` map metric names to ``{value, low, high}`` (or ``{diff, low, high}``) intervals,
    to None where a metric is undefined on the test set, or to nested point estimates (per class,
    per entity type), so they stay mappings of open values. Task-specific sections (calibration,
    residuals, thresholds, language_modeling, generation samples...) are kept as extra keys.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)
    FILE: ClassVar[str] = "metrics.json"
    OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset({"labels", "slices", "unit"})

    task: str
    split: str
    n: int
    confidence: float
    bootstrap_samples: int
    labels: list[str] | None = None
    unit: str | None = None
    model: dict[str, Any]
    baselines: dict[str, dict[str, Any]]
    comparisons: dict[str, dict[str, Any]]
    slices: list[SliceResult] | None = None
    validation: dict[str, Any] | None
    padding_efficiency: Number | None = None

    @classmethod
    def from_evaluation(cls, metrics: Mapping[str, Any]) -> Self:
        """The envelope of a task's ``evaluate`` result (already plain JSON values), at this version.

        A task that returns a malformed envelope is a bug in that task, so this raises pydantic's
        ValidationError as it is rather than a RunFolderError about a file.
        """
        return cls.model_validate({**metrics, "schema_version": SCHEMA_VERSION})

    @property
    def extra(self) -> dict[str, Any]:
        """The task-specific sections."""
        return dict(self.model_extra or {})


# -- model/tuneproof_model.json ---------------------------------------------------------------------


class ModelInfo(Evidence):
    """``model/tuneproof_model.json``: what ``predict`` and ``serve`` need to know about a packaged model."""

    FILE: ClassVar[str] = "tuneproof_model.json"
    OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset({"temperature"})

    task: str
    labels: list[str]
    max_length: int
    precision: str = "fp32"
    method: str
    base_model: BaseModelField
    deployable: bool = False
    # protocol.calibration 'temperature': predict and serve divide the logits by it.
    temperature: Number | None = None

    def write_into(self, folder: Path) -> Path:
        """Written inside a package folder still being assembled (the folder is moved in atomically)."""
        path = folder / self.FILE
        path.write_text(json.dumps(self.to_json(), indent=1))
        return path


__all__ = [
    "LEGACY_VERSION",
    "SCHEMA_VERSION",
    "BaseModelField",
    "BaseModelRecord",
    "Evidence",
    "ExportRecord",
    "GateReport",
    "GateVerdict",
    "Lineage",
    "Manifest",
    "MetricsEnvelope",
    "ModelInfo",
    "ParentRun",
    "SearchRecord",
    "SliceResult",
    "base_model_source",
    "now",
]
