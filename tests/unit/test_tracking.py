"""Training metrics reach TensorBoard always and MLflow when asked (or the run says it could not)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from tuneproof.protocol import parse_protocol
from tuneproof.train.tracking import Trackers


def _protocol(mlflow: bool) -> Any:
    return parse_protocol(
        "name: t\nmodel: {source: a/b}\ndata: {files: [x.csv]}\n"
        f"tracking: {{mlflow: {str(mlflow).lower()}}}\n"
    )


def test_tensorboard_event_files_are_written(tmp_path: Path) -> None:
    t = Trackers(_protocol(False), tmp_path)
    t.log({"step": 1, "epoch": 0.1, "loss": 0.5})
    t.log({"step": 1, "eval_macro_f1": 0.7})
    t.close()
    assert list((tmp_path / "training" / "tensorboard").glob("events.out.tfevents.*"))
    assert "mlflow" not in t.status


def test_mlflow_receives_params_and_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, Any]] = []
    fake = types.ModuleType("mlflow")
    for name in ("set_tracking_uri", "set_experiment", "start_run", "log_params", "end_run"):
        setattr(fake, name, lambda *a, _n=name, **k: calls.append((_n, a)))
    fake.log_metric = lambda name, value, step: calls.append(("log_metric", (name, value, step)))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    t = Trackers(_protocol(True), tmp_path)
    t.log({"step": 3, "loss": 0.25, "eval_accuracy": 0.8})
    t.close()
    assert ("log_metric", ("train_loss", 0.25, 3)) in calls
    assert ("log_metric", ("validation_accuracy", 0.8, 3)) in calls
    params = next(a[0] for n, a in calls if n == "log_params")
    assert params["train.learning_rate"] == 5e-5
    assert calls[-1][0] == "end_run" and t.status["mlflow"] == "mlruns"


def test_missing_mlflow_is_reported_not_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # makes `import mlflow` raise ImportError
    t = Trackers(_protocol(True), tmp_path)
    t.close()
    assert "not installed" in t.status["mlflow"]
    assert "not installed" in capsys.readouterr().err
