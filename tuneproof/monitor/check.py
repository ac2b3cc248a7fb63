"""`tuneproof monitor`: compare a production window with the run's reference and decide.

Drift is decided on p-values at the protocol's ``monitor.alpha`` for the whole verdict (Bonferroni
over the declared alarming tests by default), degradation on bootstrap intervals of the labelled
window against the release evaluation. The verdict is written as JSON and HTML under
``<run>/monitoring/<timestamp>/`` before the caller turns it into an exit code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tuneproof.errors import DriftDetected, PerformanceDegraded
from tuneproof.export.manifest import read_manifest
from tuneproof.monitor.drift import DriftTest, drift_tests
from tuneproof.monitor.features import Observed
from tuneproof.monitor.images import IMAGE_TASKS, image_drift_tests, load_image_reference, window_sample
from tuneproof.monitor.performance import check_metric_names, compare_performance
from tuneproof.monitor.reference import Reference, load_reference
from tuneproof.protocol.schema import MonitorSpec, Protocol


@dataclass
class MonitorResult:
    report: dict[str, Any]
    out_dir: Path | None
    drift: bool
    degraded: bool


def per_test_level(spec: MonitorSpec) -> float:
    """The level each alarming test runs at so that the drift verdict as a whole keeps ``alpha``."""
    if spec.correction == "bonferroni":
        return spec.alpha / max(len(spec.alarm_on), 1)
    return spec.alpha


def without_overlap(ref: Observed, window_texts: list[str]) -> tuple[Observed, int]:
    """The reference minus rows whose text is also in the window: a two-sample test needs two
    samples, and a window that repeats test rows would otherwise be compared with itself."""
    seen = set(window_texts)
    keep = np.array([i for i, t in enumerate(ref.texts) if t not in seen], dtype=np.int64)
    return ref.subset(keep), len(ref) - len(keep)


def decide(
    ref: Observed,
    win: Observed,
    spec: MonitorSpec,
    seed: int,
    null: np.ndarray | None = None,
) -> dict[str, Any]:
    """The drift part of the verdict, from two samples already observed (no files read or written).

    ``null``: the embedding test's permutation null if already computed for this reference and
    window size (``drift.reduced_null`` with the same seed gives the same one).
    """
    ref_side, dropped = without_overlap(ref, win.texts)
    tests: list[DriftTest] = drift_tests(
        ref_side, win, spec.permutations, per_test_level(spec), seed, null, ref.embeddings
    )
    return verdict_of(tests, spec, len(ref_side), dropped)


def verdict_of(
    tests: list[DriftTest], spec: MonitorSpec, reference_rows: int, dropped: int = 0
) -> dict[str, Any]:
    """The drift part of the verdict from tests already run: which alarm at the per-test level."""
    level = per_test_level(spec)
    rows = []
    alarming = []
    for t in tests:
        alarms = t.name in spec.alarm_on and t.p_value is not None and t.p_value <= level
        if alarms:
            alarming.append(t.name)
        rows.append({**t.as_dict(), "alarm_on": t.name in spec.alarm_on, "alarm": alarms})
    return {
        "alarm": bool(alarming),
        "alarming_tests": alarming,
        "level_per_test": level,
        "reference_rows": reference_rows,
        "reference_rows_left_out": dropped,
        "tests": rows,
    }


def image_monitor_spec(spec: MonitorSpec) -> MonitorSpec:
    """An image run's tests to alarm on, where its protocol names none: the image default."""
    if "alarm_on" in spec.model_fields_set:
        return spec
    from tuneproof.monitor.images import DEFAULT_IMAGE_ALARMS

    return spec.model_copy(update={"alarm_on": list(DEFAULT_IMAGE_ALARMS)})


def monitor_run(
    run_dir: Path,
    window_path: Path,
    labels_path: Path | None = None,
    window_size: int | None = None,
    text_column: str = "text",
    label_column: str = "label",
    write: bool = True,
) -> MonitorResult:
    from tuneproof.monitor.observe import observe
    from tuneproof.monitor.window import read_window
    from tuneproof.protocol import load_protocol
    from tuneproof.serve.predict import Predictor

    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    protocol: Protocol = load_protocol(run_dir / "protocol.source.yaml").protocol
    spec = protocol.monitor
    size = window_size or spec.window
    if protocol.task in IMAGE_TASKS:
        spec = image_monitor_spec(spec)
        check_metric_names(spec, "classification")
        iref = load_image_reference(run_dir)
        window = read_window(window_path, size, iref.labels, labels_path, text_column, label_column)
        win_images = window_sample(
            window.images, window.predictions, iref.labels, window.labels, window.where, window.source
        )
        drift = verdict_of(image_drift_tests(iref, win_images), spec, len(iref.sample.observed))
        ref_obs, win, labels = iref.sample.observed, win_images.observed, iref.labels
        task_name = protocol.task
    else:
        ref: Reference = load_reference(run_dir)
        check_metric_names(spec, ref.task)
        task_labels = ref.labels if ref.task == "classification" else None
        window = read_window(window_path, size, task_labels, labels_path, text_column, label_column)
        predictor = Predictor.load(run_dir)
        win = observe(predictor, window.texts, window.predictions, window.labels)
        drift = decide(ref.observed, win, spec, protocol.seed)
        ref_obs, labels, task_name = ref.observed, ref.labels, ref.task
    performance: dict[str, Any] | None = None
    if win.labels is not None:
        if task_name in ("classification", *IMAGE_TASKS):
            release = json.loads((run_dir / "metrics.json").read_text())
            performance = compare_performance(
                ref_obs,
                win,
                labels,
                spec,
                release,
                protocol.gates,
                protocol.evaluate.calibration_bins,
                protocol.evaluate.confidence,
                protocol.seed,
            )
        else:
            performance = {"available": False, "reason": f"not implemented for task {task_name!r} yet"}
    degraded = bool(performance and performance.get("degraded"))
    verdict = "degraded" if degraded else ("drift" if drift["alarm"] else "ok")
    now = datetime.now(UTC)
    report: dict[str, Any] = {
        "format": 1,
        "run": run_dir.name,
        "run_status": manifest.status,
        "deployable": manifest.deployable,
        "task": task_name,
        "created_at": now.isoformat(timespec="seconds"),
        "verdict": verdict,
        "drift_detected": drift["alarm"],
        "performance_degraded": degraded,
        "exit_code": (
            PerformanceDegraded.exit_code if degraded else (DriftDetected.exit_code if drift["alarm"] else 0)
        ),
        "window": {
            "source": window.source,
            "rows_read": window.rows_read,
            "rows_used": len(win),
            "first_row": window.where[0],
            "last_row": window.where[-1],
            "predictions": "as captured" if window.predictions is not None else "made by the run's model",
            "labelled": win.labels is not None,
        },
        "reference": {"split": "test", "rows": len(ref_obs)},
        "monitor": spec.model_dump(),
        "drift": drift,
        "performance": performance,
    }
    out_dir = None
    if write:
        from tuneproof.monitor.report import write_monitoring_report

        out_dir = write_monitoring_report(run_dir, report, now)
    return MonitorResult(report, out_dir, drift["alarm"], degraded)
