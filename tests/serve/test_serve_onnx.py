"""`serve --backend onnx`: the same requests answered with the same labels as the torch model, and a
not-released export refused like a rejected run."""

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
from tuneproof.serve.settings import ServeConfigError, ServeSettings

pytestmark = pytest.mark.integration

TEXTS = ["a great and warm film", "dull boring plot", "the cast was fine", "superb", "flat and stale"]


def _exported(cls_run: Path, tmp_path: Path, identical_min: float) -> Path:
    run_dir = Path(shutil.copytree(cls_run, tmp_path / "run"))  # the session's run stays untouched
    manifest = read_manifest(run_dir)
    spec = ExportSpec.model_validate(
        {"formats": ["onnx"], "gates": [{"metric": "identical_predictions", "min": identical_min}]}
    )
    make_exports(run_dir, spec, manifest)
    seal(run_dir, manifest)
    return run_dir


def test_serve_backend_onnx_answers_the_same_requests_with_the_same_labels(
    cls_run: Path, tmp_path: Path
) -> None:
    run_dir = _exported(cls_run, tmp_path, 0.85)
    answers = {}
    for backend in ("torch", "onnx"):
        app = create_app(run_dir, ServeSettings(warmup=False, backend=backend))
        with running(app) as base:
            wait_ready(base)
            r = httpx.post(f"{base}/predict", json={"texts": TEXTS}, timeout=30)
            assert r.status_code == 200, r.text
            assert httpx.get(f"{base}/health").json()["deployable"] is True
            answers[backend] = r.json()
    torch_rows, onnx_rows = answers["torch"]["predictions"], answers["onnx"]["predictions"]
    assert set(answers["torch"]) == set(answers["onnx"])
    assert [p["label"] for p in onnx_rows] == [p["label"] for p in torch_rows]
    for a, b in zip(onnx_rows, torch_rows, strict=True):
        assert a["probabilities"] == pytest.approx(b["probabilities"], abs=1e-4)


def test_serve_refuses_an_export_that_was_not_released(cls_run: Path, tmp_path: Path) -> None:
    run_dir = _exported(cls_run, tmp_path, 0.9999)  # 40 test rows cannot show 99.99% agreement
    with pytest.raises(ServeConfigError, match="export was not"):
        create_app(run_dir, ServeSettings(warmup=False, backend="onnx"))
    create_app(run_dir, ServeSettings(warmup=False, backend="onnx", allow_rejected=True))
