"""The export stage: ONNX, int8 and merged exports of a run's model, each re-verified and gated.

``make_exports`` runs inside ``tuneproof run`` (the protocol's ``export:`` section, after
packaging) and behind ``tuneproof export``. Every export is written to a temporary folder, scored
on the run's test split against the packaged model as ``predict`` serves it, gated, and moved into
``exports/<format>/`` whatever the verdict: a failed export is kept and marked not released. Its
evidence goes into the folder (``verification.json``), ``metrics.json`` (``exports``), the
manifest (``exports``, with file hashes) and from there into the report and the model card.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tuneproof.errors import ExportError, RunFolderError
from tuneproof.evidence import ExportRecord, Manifest, MetricsEnvelope, now
from tuneproof.export.heads import ExportHead
from tuneproof.export.info import ExportInfo, ExportVerification, model_digest
from tuneproof.export.manifest import read_manifest, write_manifest
from tuneproof.export.onnx import GRAPH_FILE, OnnxRunner, export_graph
from tuneproof.export.original import Original
from tuneproof.export.quantize import INT8_FILE, quantize_int8
from tuneproof.export.reverify import (
    MAX_LOSS_DIFF,
    MAX_PROB_DIFF,
    MAX_SCORE_DIFF,
    ORIGINAL,
    Verification,
    align_labels,
    reverify,
)
from tuneproof.fsutil import atomic_write_json, replace_dir, sha256_file
from tuneproof.protocol import load_protocol
from tuneproof.protocol.schema import ExportSpec
from tuneproof.tasks.base import Task

EXPORTS_DIR = "exports"


@dataclass
class ExportOutcome:
    format: str
    folder: Path
    released: bool
    verification: Verification
    outputs: np.ndarray  # the export's outputs on the test split, in the task's label order


def resolve_spec(protocol_spec: ExportSpec | None, formats: Sequence[str] | None) -> ExportSpec:
    """The protocol's export section, with ``formats`` (from the command line) in place of its own."""
    if not formats:
        if protocol_spec is None:
            raise ExportError("no export format: pass --format or add an export: section to the protocol")
        return protocol_spec
    base = protocol_spec.model_dump() if protocol_spec is not None else {}
    try:
        return ExportSpec.model_validate({**base, "formats": list(formats)})
    except ValueError as exc:
        raise ExportError(f"--format: {exc}") from None


def export_run(run_dir: Path, formats: Sequence[str] | None = None) -> list[ExportOutcome]:
    """``tuneproof export``: export a finished run's model, verify, gate, and re-seal the run folder."""
    manifest = read_manifest(run_dir)
    if not manifest.finished:
        raise RunFolderError(f"{run_dir} is {manifest.status}; only a finished run can be exported")
    protocol = load_protocol(run_dir / "protocol.source.yaml").protocol
    spec = resolve_spec(protocol.export, formats)
    try:
        outcomes = make_exports(run_dir, spec, manifest)
    finally:  # the exports finished before a refused one stay recorded and hashed
        seal(run_dir, manifest)
    return outcomes


def make_exports(
    run_dir: Path, spec: ExportSpec, manifest: Manifest, head: ExportHead | None = None
) -> list[ExportOutcome]:
    """Every format of ``spec``, in order; ``head`` overrides the task's graph head (tests use it
    to build the broken exports the gates must catch)."""
    original = Original.load(run_dir, manifest)
    outcomes: list[ExportOutcome] = []
    try:
        _export_each(run_dir, spec, manifest, head, original, outcomes)
    finally:
        if outcomes:
            _record_metrics(run_dir, outcomes)
    return outcomes


def _export_each(
    run_dir: Path,
    spec: ExportSpec,
    manifest: Manifest,
    head: ExportHead | None,
    original: Original,
    outcomes: list[ExportOutcome],
) -> None:
    with tempfile.TemporaryDirectory(prefix="tuneproof-export-") as scratch:
        fp32_graph: Path | None = None
        for fmt in spec.formats:
            _say(f"{fmt}: exporting and re-verifying on {len(original.test)} test rows")
            tmp = run_dir / EXPORTS_DIR / f".tmp-{fmt}"
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
            try:
                if fmt == "merged":  # verified against the adapter model it was merged from
                    from tuneproof.export.merge import export_merged

                    info, exported, reference = export_merged(original, tmp, spec)
                else:
                    reference = original.outputs
                    if fp32_graph is None:
                        fp32_graph = Path(scratch) / GRAPH_FILE
                        export_graph(
                            original.fp32_model(),
                            original.task,
                            fp32_graph,
                            original.info.max_length,
                            spec.opset,
                            head,
                        )
                    info, exported = _onnx_format(original, fmt, fp32_graph, tmp, spec, head)
                started = time.perf_counter()
                # Both sides as `predict` and `serve` return them: with the run's temperature, which
                # an ONNX graph (ending in the head's softmax) does not carry.
                calibrated = original.predictor.calibrated
                reference, exported = calibrated(reference), calibrated(exported)
                verification = reverify(original.task, original.test, reference, exported, spec)
                outcome = _write(
                    run_dir, fmt, tmp, info, verification, time.perf_counter() - started, manifest
                )
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            outcomes.append(
                ExportOutcome(fmt, run_dir / outcome.folder, outcome.released, verification, exported)
            )
            for v in verification.gates.verdicts:
                _say(f"{fmt}: {'PASS' if v.passed else 'FAIL'} {v.gate}: {v.detail}")


def _onnx_format(
    original: Original, fmt: str, fp32_graph: Path, out: Path, spec: ExportSpec, head: ExportHead | None
) -> tuple[ExportInfo, np.ndarray]:
    from tuneproof.export.heads import head_for

    head = head or head_for(original.task)
    if fmt == "onnx":
        shutil.copyfile(fp32_graph, out / GRAPH_FILE)
        model_file, quantization, kept = GRAPH_FILE, None, None
    else:
        quantization, kept = quantize_int8(fp32_graph, out / INT8_FILE, spec.int8)
        model_file = INT8_FILE
    original.tokenizer.save_pretrained(out)
    info = ExportInfo(
        format=fmt,
        task=original.task.name,
        kind=head.kind,
        labels=list(original.task.labels),
        max_length=original.info.max_length,
        output=head.output,
        model_file=model_file,
        opset=spec.opset,
        thresholds=_thresholds(original.task),
        source_model_sha256=model_digest(original.model_dir),
        quantization=quantization,
        kept_fp32=kept,
    )
    info.write(out)
    runner = OnnxRunner(out, info)
    raw = runner.predict(original.task, original.features, original.pad_id, original.batch_size)
    return info, align_labels(original.task, raw, info.labels)


def _thresholds(task: Task) -> dict[str, float] | None:
    from tuneproof.tasks.multilabel import MultilabelTask

    if not isinstance(task, MultilabelTask):
        return None
    return {lab: float(t) for lab, t in zip(task.labels, task.thresholds, strict=True)}


def _write(
    run_dir: Path,
    fmt: str,
    tmp: Path,
    info: ExportInfo,
    verification: Verification,
    seconds: float,
    manifest: Manifest,
) -> ExportRecord:
    gates = verification.gates
    released = gates.passed and manifest.deployable
    if not gates.passed:
        reason = "not released: export gate(s) failed: " + "; ".join(
            f"{v.gate} ({v.detail})" for v in gates.verdicts if not v.passed
        )
    elif not manifest.deployable:
        reason = "not released: the export passed its gates, but the run's own model is not deployable"
    else:
        reason = "released: every export gate passed on the test split"
    evaluation = verification.evaluation
    ExportVerification(
        format=fmt,
        released=released,
        reason=reason,
        n=int(evaluation["n"]),
        confidence=float(evaluation["confidence"]),
        evaluation=evaluation,
        gates=gates,
        seconds=round(seconds, 3),
    ).write(tmp)
    folder = run_dir / EXPORTS_DIR / fmt
    replace_dir(tmp, folder)
    record = ExportRecord(
        format=fmt,
        folder=folder.relative_to(run_dir).as_posix(),
        released=released,
        reason=reason,
        failed_gates=gates.failed,
        files={
            p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()
        },
        created_at=now(),
    )
    manifest.record_export(record)
    return record


def _record_metrics(run_dir: Path, outcomes: Sequence[ExportOutcome]) -> None:
    """The exports' headline figures in ``metrics.json`` (``exports``), next to the model's own."""
    envelope = MetricsEnvelope.read(run_dir)
    data = envelope.to_json()
    exports = dict(data.get("exports") or {})
    for o in outcomes:
        ev = o.verification.evaluation
        model = ev["model"]
        exports[o.format] = {
            "released": o.released,
            "folder": o.folder.relative_to(run_dir).as_posix(),
            "gates_passed": o.verification.gates.passed,
            "failed_gates": o.verification.gates.failed,
            "identical_predictions": model.get("identical_predictions"),
            **{k: model[k] for k in (MAX_PROB_DIFF, MAX_SCORE_DIFF, MAX_LOSS_DIFF) if k in model},
            "model": {k: v for k, v in model.items() if isinstance(v, dict) and "value" in v},
            "difference_vs_original": ev.get("comparisons", {}).get(ORIGINAL, {}),
        }
    data["exports"] = exports
    atomic_write_json(run_dir / MetricsEnvelope.FILE, data)


def seal(run_dir: Path, manifest: Manifest) -> None:
    """Rewrite the report and model card with the export evidence, then the manifest (hashing all)."""
    from tuneproof.report import write_model_card, write_report

    write_manifest(run_dir, manifest, hash_files=False)
    for writer in (write_report, write_model_card):
        try:
            writer(run_dir)
        except Exception as exc:  # the export evidence is already on disk; say what is missing
            _say(f"could not write {writer.__name__}: {exc}")
    write_manifest(run_dir, manifest)


def _say(message: str) -> None:
    print(f"[export] {message}", file=sys.stderr, flush=True)


__all__ = ["EXPORTS_DIR", "ExportOutcome", "Original", "export_run", "make_exports", "resolve_spec", "seal"]
