"""Run a protocol end to end: prepare -> train -> evaluate -> gates -> package -> report.

Each stage is a call into its own package; this module only orders them, writes the run folder,
and keeps the manifest's status truthful when something fails.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tuneproof import __version__
from tuneproof.context import RunContext, build_context
from tuneproof.data.prepare import PreparedData, write_splits
from tuneproof.errors import Interrupted, RunFolderError, TuneproofError
from tuneproof.evidence import BaseModelRecord, GateReport, Lineage, Manifest, MetricsEnvelope, ModelInfo, now
from tuneproof.export.manifest import environment, read_manifest, write_manifest
from tuneproof.export.package import package_model
from tuneproof.fsutil import atomic_write_json, atomic_write_text
from tuneproof.gates import check_gates
from tuneproof.monitor.reference import write_reference
from tuneproof.protocol import LoadedProtocol, dump_protocol, load_protocol
from tuneproof.protocol.schema import Protocol
from tuneproof.train import distributed
from tuneproof.train.fit import build_features, fit
from tuneproof.train.model_source import ModelRef, base_model_record, parent_run
from tuneproof.train.tracking import Trackers


@dataclass
class RunOutcome:
    run_dir: Path
    status: str  # passed | rejected | failed
    gates: GateReport | None


def stage(name: str, message: str) -> None:
    if not distributed.is_main():  # with several ranks, one voice
        return
    print(f"[{name}] {message}", file=sys.stderr, flush=True)


def _new_run_dir(protocol: Protocol, base_dir: Path, output_dir: Path | None) -> Path:
    root = runs_root(protocol, base_dir, output_dir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = root / f"{protocol.name}-{stamp}"
    i = 1
    while run_dir.exists():
        i += 1
        run_dir = root / f"{protocol.name}-{stamp}-{i}"
    run_dir.mkdir(parents=True)
    return run_dir


def run(
    protocol_path: Path | None = None,
    output_dir: Path | None = None,
    resume_dir: Path | None = None,
    cache_dir: Path | None = None,
    fresh: bool = False,
    search_workers: int = 1,
) -> RunOutcome:
    """Run a protocol file, or resume the unfinished run in ``resume_dir``.

    A run of the same protocol file (same hash) that was killed or interrupted is resumed
    automatically unless ``fresh`` is set.
    """
    distributed.init_process_group()  # no-op for one process; ranks must agree on the run folder
    manifest: Manifest | None = None
    run_dir: Path | None = None
    if resume_dir is not None:
        manifest = read_manifest(resume_dir)
        if manifest.finished:
            raise RunFolderError(f"{resume_dir} already finished ({manifest.status}); nothing to resume")
        loaded = load_protocol(resume_dir / "protocol.source.yaml")
        base_dir = Path(manifest.protocol_dir)
        run_dir = resume_dir
    else:
        assert protocol_path is not None
        loaded = load_protocol(protocol_path)
        if loaded.protocol.federated is not None:  # its data is at the sites, never here
            raise RunFolderError(f"{protocol_path} is a federated protocol: run it with `tuneproof federate`")
        unfinished = distributed.broadcast_object(None if fresh else find_unfinished(loaded, output_dir))
        if unfinished is not None:
            stage("resume", f"found the unfinished run {unfinished}; resuming it (--fresh starts a new one)")
            return run(resume_dir=unfinished, cache_dir=cache_dir, search_workers=search_workers)
        base_dir = loaded.base_dir
    ctx = build_context(loaded, base_dir, cache_dir)

    stage("prepare", "reading, validating and cleaning data")
    distributed.others_wait()  # with several ranks, rank 0 prepares first and fills the caches
    prepared = ctx.prepare()
    distributed.main_done()
    if run_dir is None and not distributed.is_main():
        run_dir = distributed.broadcast_object(None)  # the folder rank 0 created
        manifest = read_manifest(run_dir)  # rank 0 wrote it before telling the folder
    elif run_dir is None:
        run_dir = _new_run_dir(ctx.protocol, base_dir, output_dir)
        manifest = _start_manifest(ctx, prepared)
        write_manifest(run_dir, manifest, hash_files=False)
        atomic_write_text(run_dir / "protocol.yaml", dump_protocol(ctx.protocol))
        atomic_write_text(run_dir / "protocol.source.yaml", loaded.text)
        write_splits(prepared, run_dir / "data")
        atomic_write_json(run_dir / "data_report.json", prepared.report)
        distributed.broadcast_object(run_dir)
    else:
        _check_same_data(run_dir, prepared)
        assert manifest is not None  # read above, with resume_dir
        manifest.mark_resumed()
        if distributed.is_main():
            write_manifest(run_dir, manifest, hash_files=False)
    stage("prepare", " ".join(f"{k}={v['rows']}" for k, v in prepared.report["splits"].items()))
    for warning in prepared.report.get("small_classes") or []:  # before training, not only in the report
        stage("prepare", f"warning: {warning['text']}")
    assert manifest is not None  # read, started or (on other ranks) read back above
    try:
        if ctx.protocol.search is not None:
            from tuneproof.search.entry import lead_search

            ctx = lead_search(
                ctx,
                prepared,
                run_dir,
                manifest,
                lambda m: stage("search", m.removeprefix("[search] ")),
                workers=search_workers,
            )
        outcome = _train_evaluate_package(ctx, prepared, run_dir, manifest, resume=resume_dir is not None)
    except BaseException as exc:
        interrupted = isinstance(exc, Interrupted | KeyboardInterrupt)
        manifest.finish("interrupted" if interrupted else "failed", error=f"{type(exc).__name__}: {exc}")
        _finish(run_dir, manifest)
        raise
    return outcome


def runs_root(protocol: Protocol, base_dir: Path, output_dir: Path | None) -> Path:
    if output_dir is not None:
        return output_dir
    out = Path(protocol.output_dir)
    return out if out.is_absolute() else base_dir / out


def find_unfinished(loaded: LoadedProtocol, output_dir: Path | None) -> Path | None:
    """The newest run folder of this exact protocol file that was killed or interrupted."""
    root = runs_root(loaded.protocol, loaded.base_dir, output_dir)
    candidates = []
    for d in root.glob(f"{loaded.protocol.name}-*"):
        try:
            m = Manifest.read(d)
        except RunFolderError:  # not a run folder, or one this version cannot read: not resumable
            continue
        if m.status in ("running", "interrupted") and m.protocol_sha256 == loaded.sha256:
            candidates.append((m.started_at, d))
    return max(candidates)[1] if candidates else None


def _start_manifest(ctx: RunContext, prepared: PreparedData) -> Manifest:
    loaded = ctx.loaded
    base_model = base_model_record(ctx.ref)
    return Manifest(
        tuneproof_version=__version__,
        status="running",
        deployable=False,
        protocol=loaded.protocol.name,
        task=loaded.protocol.task,
        protocol_path=str(loaded.path),
        protocol_dir=str(loaded.base_dir),
        protocol_sha256=loaded.sha256,
        inputs=prepared.input_hashes,
        base_model=base_model,
        splits={k: v["sha256"] for k, v in prepared.report["splits"].items()},
        environment=environment(ctx.threads, ctx.precision, "cpu"),
        precision_reason=ctx.precision_reason,
        seed=loaded.protocol.seed,
        started_at=now(),
        finished_at=None,
        error=None,
        lineage=_lineage(loaded, ctx.ref, base_model),
        processes=distributed.world_size(),
        distributed=distributed.mode(),  # single | ddp | fsdp
    )


def _lineage(loaded: LoadedProtocol, ref: ModelRef, base_model: BaseModelRecord) -> Lineage:
    """The base model at the root of the chain, and the parent run when starting from one's model."""
    parent = parent_run(ref)
    if parent is None:
        return Lineage(base_model=base_model, protocol_sha256=loaded.sha256)
    return Lineage(base_model=parent.base_model, protocol_sha256=loaded.sha256, parent=parent)


def _check_same_data(run_dir: Path, prepared: PreparedData) -> None:
    recorded = read_manifest(run_dir).splits
    current = {k: v["sha256"] for k, v in prepared.report["splits"].items()}
    if recorded != current:
        raise RunFolderError(f"the data changed since {run_dir} started; start a new run instead of resuming")


def _train_evaluate_package(
    ctx: RunContext, prepared: PreparedData, run_dir: Path, manifest: Manifest, resume: bool
) -> RunOutcome:
    task, protocol, ref, tokenizer = ctx.task, ctx.protocol, ctx.ref, ctx.tokenizer
    precision, cache_dir = ctx.precision, ctx.cache_dir
    task.set_labels(prepared)
    power = _power(protocol, prepared, task)
    splits, canaries = prepared.splits, None
    audit = protocol.privacy.audit if protocol.privacy is not None else None
    if audit is not None and audit.canaries is not None:
        from tuneproof.privacy.canary import plant

        # Training only: the data/ folder keeps the split as prepared, without the canaries.
        planted, canaries = plant(splits["train"], audit.canaries, protocol.seed)
        splits = {**splits, "train": planted}
    distributed.others_wait()
    features = build_features(task, splits, tokenizer, cache_dir)
    distributed.main_done()
    trackers = Trackers(protocol, run_dir, enabled=distributed.is_main())
    manifest.record_tracking(trackers.status)

    stage(
        "train",
        f"{protocol.train.method} fine-tuning, precision {precision}, {len(features['train'])} examples",
    )
    try:
        result = fit(
            task,
            protocol,
            ref,
            tokenizer,
            features,
            run_dir / "checkpoints",
            precision,
            resume,
            trackers.log,
            splits=splits,
        )
    finally:
        trackers.close()
    precision = result.precision  # the probe's choice, where it ran: scored and served in it too
    if result.probe is not None:
        stage("train", f"trained as {result.probe.chosen}: {result.probe.reason}")
        manifest.record_precision(precision, result.probe.reason)
    if not distributed.is_main():  # rank 0 alone evaluates, packages and writes the evidence
        distributed.finish()
        return RunOutcome(run_dir, "worker", None)
    if result.train.skipped_checkpoints:
        stage("train", "ignored incomplete checkpoints: " + "; ".join(result.train.skipped_checkpoints))
    atomic_write_json(run_dir / "training" / "log_history.json", result.train.log_history)
    atomic_write_json(
        run_dir / "training" / "summary.json",
        {
            "steps": result.train.steps,
            "best_step": result.train.best_step,
            "best_metric": result.train.best_metric,
            "stopped_early": result.train.stopped_early,
            "resumed_from": result.train.resumed_from,
            "skipped_checkpoints": result.train.skipped_checkpoints,
            "padding_efficiency": result.train.padding_efficiency,
            "real_tokens": result.train.real_tokens,
            "padded_tokens": result.train.padded_tokens,
            "train_seconds": result.train.train_seconds,
            **({"dp_sgd": result.dp_sgd} if result.dp_sgd is not None else {}),
            **({"precision_probe": result.probe.to_json()} if result.probe is not None else {}),
        },
    )

    stage("evaluate", "scoring the test split, the baselines and the bootstrap intervals")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    val_feats = features.get("validation") or []
    validation = (
        task.validation_metrics(result.model, val_feats, pad_id, protocol.evaluate.batch_size, precision)
        if val_feats
        else None
    )
    # The test split is read here, once, after training and model selection are over.
    test = prepared.splits["test"]
    outputs = task.predict(result.model, features["test"], pad_id, protocol.evaluate.batch_size, precision)
    temperature = None
    if protocol.calibration == "temperature":
        temperature, outputs = _calibrate(task, result.model, val_feats, pad_id, precision, outputs)
    (run_dir / "predictions").mkdir(exist_ok=True)
    task.prediction_frame(test, outputs).to_parquet(run_dir / "predictions" / "test.parquet", index=False)
    baselines = task.baselines(prepared, test, next(result.model.parameters()).device)
    metrics = task.evaluate(test, outputs, baselines.outputs, validation)
    if baselines.validation:
        metrics["validation_baselines"] = baselines.validation
    metrics.update(task.evaluation_notes(features))
    if power is not None:
        metrics["power"] = power
    if protocol.evaluate.learning_curve is not None:
        from tuneproof.curve.run import learning_curve

        stage("curve", "learning curve: training each point once (cached points are reused)")
        metrics["learning_curve"] = learning_curve(
            task,
            protocol,
            ref,
            tokenizer,
            prepared,
            features,
            outputs,
            precision,
            run_dir,
            cache_dir,
            _model_digest(manifest, ref),
            lambda message: stage("curve", message),
        )
        stage("curve", metrics["learning_curve"]["answer"])
    metrics["task"] = task.name  # the scorer may be shared between tasks; the envelope names the run's
    metrics["padding_efficiency"] = result.train.padding_efficiency
    if result.probe is not None:  # what precision and layout the model was trained in, and why
        metrics["precision_probe"] = result.probe.to_json()
    if prepared.report.get("pii"):
        from tuneproof.data.pii_step import remaining_by_type

        metrics.setdefault("model", {})["pii_remaining"] = remaining_by_type(prepared.report["pii"])
    if result.dp_sgd is not None:
        metrics.setdefault("model", {})["epsilon"] = result.dp_sgd["epsilon"]
        metrics.setdefault("privacy", {})["dp_sgd"] = result.dp_sgd
        from tuneproof.privacy.stage import dp_budget

        manifest.record_privacy(dp_budget(result.dp_sgd))
    if protocol.privacy is not None and protocol.privacy.audit is not None:
        from tuneproof.privacy.stage import add_to_metrics, membership_audit

        stage("audit", "membership inference: training rows against held-out test rows")
        add_to_metrics(metrics, membership_audit(task, protocol, result.model, features, pad_id))
        if canaries is not None:
            from tuneproof.privacy.stage import canary_audit

            stage("audit", f"canary exposure: {len(canaries)} planted secrets")
            canary_audit(protocol, result.model, tokenizer, canaries, metrics)
    envelope = MetricsEnvelope.from_evaluation(_jsonable(metrics))
    envelope.write(run_dir)

    gates = check_gates(protocol.gates, envelope.to_json(), protocol.evaluate.gate_family)
    gates.write(run_dir)
    for v in gates.verdicts:
        stage("gates", f"{'PASS' if v.passed else 'FAIL'} {v.gate}: {v.detail}")

    stage("package", "writing the model as safetensors")
    info = ModelInfo(
        task=protocol.task,
        labels=task.labels,
        max_length=protocol.model.max_length,
        precision=precision,
        method=protocol.train.method,
        base_model=manifest.base_model,  # the portable reference, as the manifest records it
        deployable=gates.passed,
        temperature=temperature,
    )
    if protocol.train.method == "lora":  # kept so a `merged` export can be verified against it
        from tuneproof.export.merge import save_adapter

        save_adapter(result.model, run_dir)
    package_model(result.model, tokenizer, info, run_dir / "model")
    write_reference(run_dir, task, test, outputs)  # what `tuneproof monitor` compares production with
    shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    status: Literal["passed", "rejected"] = "passed" if gates.passed else "rejected"
    manifest.finish(status, deployable=gates.passed)
    if protocol.export is not None:  # the last stage: each export re-verified and gated on the test split
        from tuneproof.export.stage import make_exports

        stage("export", ", ".join(protocol.export.formats))
        make_exports(run_dir, protocol.export, manifest)
    _finish(run_dir, manifest)
    stage("done", f"{status}: {run_dir}")
    return RunOutcome(run_dir, status, gates)


def _power(protocol: Protocol, prepared: PreparedData, task: Any) -> dict[str, Any] | None:
    """The minimum detectable effect of each ``beats`` gate, stated before training starts."""
    from tuneproof.evaluate.power import minimum_detectable_effects

    power = minimum_detectable_effects(protocol, prepared.splits, list(task.labels or []) or None)
    for row in (power or {}).get("gates", []):
        stage("power", row["warning"] or f"{row['gate']}: minimum detectable effect {row['mde']:.3g}")
    return power


def _calibrate(
    task: Any, model: Any, val_feats: Any, pad_id: int, precision: str, test_probs: np.ndarray
) -> tuple[float, np.ndarray]:
    """Fit the temperature on the validation split and apply it to the test probabilities; the task
    keeps the uncalibrated ones for the before/after comparison."""
    from tuneproof.evaluate.calibration import apply_temperature, fit_temperature

    val_probs = task.predict(model, val_feats, pad_id, task.protocol.evaluate.batch_size, precision)
    temperature = fit_temperature(val_probs, np.array([f["labels"] for f in val_feats]))
    stage("calibrate", f"temperature {temperature:.4g}, fitted on {len(val_feats)} validation rows")
    task.temperature, task.uncalibrated = temperature, np.asarray(test_probs)
    return temperature, apply_temperature(np.asarray(test_probs), temperature)


def _model_digest(manifest: Manifest, ref: ModelRef) -> str:
    """What identifies the base model's weights in a cache key: their hash where it was taken."""
    record = manifest.base_model
    digest = record.sha256 if isinstance(record, BaseModelRecord) else None
    return digest or ref.name_or_path


def _finish(run_dir: Path, manifest: Manifest) -> None:
    """Write the evidence a person reads, then the manifest last (it hashes everything else)."""
    if not distributed.is_main():
        return
    from tuneproof.report import write_model_card, write_report

    write_manifest(run_dir, manifest, hash_files=False)  # the report reads status and error from it
    for writer in (write_report, write_model_card):
        try:
            writer(run_dir)
        except Exception as exc:  # the evidence of a failed run must not hide the original error
            stage("report", f"could not write {writer.__name__}: {exc}")
    write_manifest(run_dir, manifest)


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.item() if isinstance(o, np.generic) else str(o)))


__all__ = ["RunOutcome", "TuneproofError", "run"]
