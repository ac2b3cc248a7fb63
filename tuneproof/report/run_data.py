"""Read a run folder's JSON/YAML files into one tolerant, read-only view for the report writers.

The report must render for every state a run can be left in (failed before evaluation, no
validation split, tasks that add their own metrics), so nothing here raises on a missing or
malformed file: a missing file reads as empty and a malformed one is recorded in ``problems``.

The evidence files (manifest, gates, metrics) are read through their models
(:mod:`tuneproof.evidence`); where one validates, the typed object is kept and its dict is what the
report sections read. Where one does not, the problem is recorded and the raw mapping is kept, so
the page still shows what the file holds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from tuneproof.errors import RunFolderError
from tuneproof.evidence import Evidence, GateReport, Manifest, MetricsEnvelope

# Relative paths of the files the report reads, keyed by the attribute they fill.
RUN_FILES: dict[str, str] = {
    "protocol": "protocol.yaml",
    "data_report": "data_report.json",
    "metrics": "metrics.json",
    "gates": "gates.json",
    "log_history": "training/log_history.json",
    "manifest": "manifest.json",
}

# The evidence files' models, keyed by the attribute their dict fills.
EVIDENCE_MODELS: dict[str, type[Evidence]] = {
    "metrics": MetricsEnvelope,
    "gates": GateReport,
    "manifest": Manifest,
}

# A run folder is written by us, but it may be handed around; cap what we parse.
MAX_FILE_BYTES = 50_000_000


def mapping(value: Any) -> dict[str, Any]:
    """``value`` if it is a mapping, else an empty dict: lets callers chain lookups on untrusted JSON."""
    return dict(value) if isinstance(value, Mapping) else {}


def sequence(value: Any) -> list[Any]:
    """``value`` if it is a list-like (not a string), else an empty list."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    return []


def number(value: Any) -> float | None:
    """A finite float, or None for anything else (bools, strings, NaN, missing)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def dig(obj: Any, *keys: str | int) -> Any:
    """Nested lookup that returns None instead of raising on any missing or mistyped level."""
    for key in keys:
        if isinstance(key, int):
            seq = sequence(obj)
            obj = seq[key] if -len(seq) <= key < len(seq) else None
        else:
            obj = mapping(obj).get(key)
        if obj is None:
            return None
    return obj


def parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        return None


@dataclass(frozen=True)
class RunData:
    """Everything the report writers read from one run folder; absent parts are empty."""

    path: Path
    protocol: dict[str, Any] = field(default_factory=dict)
    data_report: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    gates: dict[str, Any] = field(default_factory=dict)
    log_history: list[dict[str, Any]] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    # The typed evidence, where the file validated against its model.
    typed: dict[str, Evidence] = field(default_factory=dict)

    @property
    def manifest_doc(self) -> Manifest | None:
        doc = self.typed.get("manifest")
        return doc if isinstance(doc, Manifest) else None

    @property
    def gate_report(self) -> GateReport | None:
        doc = self.typed.get("gates")
        return doc if isinstance(doc, GateReport) else None

    @property
    def envelope(self) -> MetricsEnvelope | None:
        doc = self.typed.get("metrics")
        return doc if isinstance(doc, MetricsEnvelope) else None

    @property
    def name(self) -> str:
        name = self.protocol.get("name")
        return str(name) if name else self.path.name

    @property
    def task(self) -> str:
        if self.envelope is not None:
            return self.envelope.task
        if self.manifest_doc is not None:
            return self.manifest_doc.task
        return str(self.metrics.get("task") or self.protocol.get("task") or "unknown")

    @property
    def status(self) -> str:
        if self.manifest_doc is not None:
            return self.manifest_doc.status
        status = self.manifest.get("status")
        if isinstance(status, str) and status:
            return status
        # Without a manifest the gates are the best evidence of how the run ended.
        if isinstance(self.gates.get("passed"), bool):
            return "passed" if self.gates["passed"] else "rejected"
        return "unknown"

    @property
    def deployable(self) -> bool:
        if self.manifest_doc is not None:
            return self.manifest_doc.deployable
        value = self.manifest.get("deployable")
        return value if isinstance(value, bool) else self.status == "passed"

    @property
    def error(self) -> str | None:
        """The manifest's error as one readable string; it may be a string or a {type, message} dict."""
        err = self.manifest.get("error")
        if err is None or err == "" or err == {}:
            return None
        if isinstance(err, Mapping):
            kind, message = err.get("type"), err.get("message")
            if kind or message:
                return ": ".join(str(p) for p in (kind, message) if p)
            return json.dumps(err, sort_keys=True, default=str)
        return str(err)

    @property
    def labels(self) -> list[str]:
        labels = sequence(self.metrics.get("labels")) or sequence(dig(self.protocol, "data", "labels"))
        return [str(x) for x in labels]

    @property
    def model_metrics(self) -> dict[str, Any]:
        return mapping(self.metrics.get("model"))

    @property
    def baselines(self) -> dict[str, dict[str, Any]]:
        return {str(k): mapping(v) for k, v in mapping(self.metrics.get("baselines")).items()}

    @property
    def comparisons(self) -> dict[str, dict[str, Any]]:
        return {str(k): mapping(v) for k, v in mapping(self.metrics.get("comparisons")).items()}

    @property
    def confidence(self) -> float:
        if self.envelope is not None:
            return self.envelope.confidence
        return (
            number(self.metrics.get("confidence"))
            or number(dig(self.protocol, "evaluate", "confidence"))
            or 0.95
        )

    @property
    def verdicts(self) -> list[dict[str, Any]]:
        if self.gate_report is not None:
            return [v.to_json() for v in self.gate_report.verdicts]
        return [mapping(v) for v in sequence(self.gates.get("verdicts")) if isinstance(v, Mapping)]

    @property
    def duration_seconds(self) -> float | None:
        doc = self.manifest_doc
        start = parse_time(doc.started_at if doc else self.manifest.get("started_at"))
        end = parse_time(doc.finished_at if doc else self.manifest.get("finished_at"))
        if start is None or end is None:
            return None
        try:
            return (end - start).total_seconds()
        except TypeError:  # one timestamp naive, the other aware
            return None


def _read(path: Path) -> Any:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        return yaml.safe_load(text)
    return json.loads(text)


def load_run(run_dir: Path) -> RunData:
    """Read whatever of the run folder exists; never raises for missing or malformed files."""
    run_dir = Path(run_dir)
    values: dict[str, Any] = {}
    missing: list[str] = []
    problems: list[str] = []
    typed: dict[str, Evidence] = {}
    for attr, rel in RUN_FILES.items():
        path = run_dir / rel
        if not path.is_file():
            missing.append(rel)
            continue
        try:
            raw = _read(path)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            problems.append(f"{rel}: could not be read ({exc})")
            continue
        if attr == "log_history":
            # Trainer writes a bare list; a wrapper {"log_history": [...]} is accepted too.
            entries = sequence(raw) or sequence(mapping(raw).get("log_history"))
            values[attr] = [mapping(e) for e in entries if isinstance(e, Mapping)]
        elif isinstance(raw, Mapping):
            values[attr] = dict(raw)
            if (model := EVIDENCE_MODELS.get(attr)) is not None:
                try:
                    typed[attr] = model.from_json(raw, rel)
                except RunFolderError as exc:
                    problems.append(str(exc))
                else:
                    values[attr] = typed[attr].to_json()
        else:
            problems.append(f"{rel}: expected a mapping at the top level")
    return RunData(path=run_dir, missing=tuple(missing), problems=tuple(problems), typed=typed, **values)
