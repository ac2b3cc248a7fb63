"""`serve --backend onnx` and `--backend onnx-int8`: the same requests answered with the same labels
as the torch model, and a not-released export refused like a rejected run."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from serve_helpers import running, wait_ready

from tuneproof.export.manifest import read_manifest
from tuneproof.export.stage import make_exports, seal
from tuneproof.protocol.schema import ExportSpec
from tuneproof.serve.app import create_app
from tuneproof.serve.predict import Predictor
from tuneproof.serve.settings import ServeConfigError, ServeSettings

pytestmark = pytest.mark.integration

TEXTS = ["a great and warm film", "dull boring plot", "the cast was fine", "superb", "flat and stale"]


def _exported(
    cls_run: Path, tmp_path: Path, identical_min: float, formats: tuple[str, ...] = ("onnx",)
) -> Path:
    run_dir = Path(shutil.copytree(cls_run, tmp_path / "run"))  # the session's run stays untouched
    manifest = read_manifest(run_dir)
    spec = ExportSpec.model_validate(
        {"formats": list(formats), "gates": [{"metric": "identical_predictions", "min": identical_min}]}
    )
    make_exports(run_dir, spec, manifest)
    seal(run_dir, manifest)
    return run_dir


def test_serve_backends_answer_the_same_requests_with_the_same_labels(cls_run: Path, tmp_path: Path) -> None:
    run_dir = _exported(cls_run, tmp_path, 0.85, ("onnx", "onnx-int8"))
    answers = {}
    for backend in ("torch", "onnx", "onnx-int8"):
        app = create_app(run_dir, ServeSettings(warmup=False, backend=backend))
        with running(app) as base:
            wait_ready(base)
            r = httpx.post(f"{base}/predict", json={"texts": TEXTS}, timeout=30)
            assert r.status_code == 200, r.text
            assert httpx.get(f"{base}/health").json()["deployable"] is True
            answers[backend] = r.json()
    torch_rows = answers["torch"]["predictions"]
    # int8 weights move probabilities by far more than fp32 ONNX does; neither may move a label.
    for backend, tol in (("onnx", 1e-4), ("onnx-int8", 0.05)):
        rows = answers[backend]["predictions"]
        assert set(answers[backend]) == set(answers["torch"])
        assert [p["label"] for p in rows] == [p["label"] for p in torch_rows], backend
        for a, b in zip(rows, torch_rows, strict=True):
            assert a["probabilities"] == pytest.approx(b["probabilities"], abs=tol), backend
        # The server answers what `predict --backend` answers offline on the same texts.
        offline = Predictor.load(run_dir, backend=backend).predict(TEXTS)
        assert [p["label"] for p in rows] == [p["label"] for p in offline], backend
        for a, b in zip(rows, offline, strict=True):
            assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-6), backend


def test_serve_refuses_an_export_that_was_not_released(cls_run: Path, tmp_path: Path) -> None:
    run_dir = _exported(cls_run, tmp_path, 0.9999)  # 40 test rows cannot show 99.99% agreement
    with pytest.raises(ServeConfigError, match="export was not"):
        create_app(run_dir, ServeSettings(warmup=False, backend="onnx"))
    create_app(run_dir, ServeSettings(warmup=False, backend="onnx", allow_rejected=True))
