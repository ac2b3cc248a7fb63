"""Serving an image model (a tiny ViT trained through the CLI, calibrated) on a real uvicorn on
127.0.0.1: base64 JSON and multipart answer exactly what evaluation scored and what `tuneproof
predict` prints for the same files; every limit (count, bytes, pixels, format, mode) is a 4xx that
names it; a file corrupt past its header fails only its own request; auth and metrics as for text."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from image_helpers import write_image_folder, write_tiny_vit
from PIL import Image
from serve_helpers import running, wait_ready

from tuneproof.serve.app import create_app
from tuneproof.serve.auth import ApiKeys, key_digest
from tuneproof.serve.settings import Batching, Capture, Limits, ServeConfigError, ServeSettings

pytestmark = pytest.mark.integration

KEY = "tp-Image-key-0123456789"
PROTOCOL = """
name: tiny-images-serve
task: image_classification
seed: 3
model: {source: vit}
data:
  splits: {train: [train], validation: [val], test: [test]}
images:
  augment: {hflip: 0.5}
train: {epochs: 2, batch_size: 16, learning_rate: 0.003, scheduler: constant, precision: fp32}
calibration: temperature
evaluate: {bootstrap_samples: 100}
gates:
  - {metric: accuracy, min: 0.0}
"""


def tp(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tuneproof", *args],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("serve-images")
    write_tiny_vit(d / "vit")
    write_image_folder(d / "train", 16, seed=1)
    write_image_folder(d / "val", 6, seed=2)
    write_image_folder(d / "test", 7, seed=3)
    (d / "protocol.yaml").write_text(PROTOCOL)
    res = tp("run", "protocol.yaml", "--output-dir", str(d / "runs"), cwd=d)
    assert res.returncode == 0, res.stderr[-3000:]
    (run_dir,) = (d / "runs").iterdir()
    return run_dir


def _settings(**limits: Any) -> ServeSettings:
    return ServeSettings(limits=Limits(**limits))


def _test_files(run_dir: Path) -> tuple[list[Path], pd.DataFrame]:
    """The test split's source files, and the calibrated probabilities evaluation scored for them."""
    test = pd.read_parquet(run_dir / "data" / "test.parquet")
    preds = pd.read_parquet(run_dir / "predictions" / "test.parquet").set_index("row_id")
    base = run_dir.parents[1]  # the protocol's folder: the source paths are relative to it
    return [base / t for t in test["text"]], preds.loc[test["row_id"]]


def _probs(records: list[dict[str, Any]], labels: list[str]) -> np.ndarray:
    return np.array([[r["probabilities"][lab] for lab in labels] for r in records])


def _png(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_served_predictions_are_evaluations_and_the_clis(image_run: Path) -> None:
    files, scored = _test_files(image_run)
    labels = [c.removeprefix("prob_") for c in scored.columns if c.startswith("prob_")]
    temperature = json.loads((image_run / "model" / "tuneproof_model.json").read_text())["temperature"]
    assert temperature is not None and abs(temperature - 1.0) > 0.01  # the calibrated path is exercised
    with running(create_app(image_run)) as base:
        wait_ready(base)
        assert httpx.get(f"{base}/health").json()["task"] == "image_classification"
        as_json = []
        for start in range(0, len(files), 16):  # max_images is 16
            chunk = files[start : start + 16]
            r = httpx.post(f"{base}/predict", json={"images": [_b64(f.read_bytes()) for f in chunk]})
            assert r.status_code == 200, r.text
            as_json += r.json()["predictions"]
        chunk = files[:5]
        r = httpx.post(
            f"{base}/predict/upload",
            files=[("files", (f.name, f.read_bytes(), "image/png")) for f in chunk],
        )
        assert r.status_code == 200, r.text
        uploaded = r.json()["predictions"]
        # a data URI is accepted as well
        uri = "data:image/png;base64," + _b64(files[0].read_bytes())
        r = httpx.post(f"{base}/predict", json={"images": [uri]})
        assert r.json()["predictions"][0] == as_json[0]
    # Evaluation's calibrated probabilities, to the 6 decimals a response carries.
    np.testing.assert_allclose(_probs(as_json, labels), scored[[f"prob_{x}" for x in labels]], atol=2e-6)
    assert [p["label"] for p in as_json] == list(scored["pred"])
    assert uploaded == as_json[:5]
    # `tuneproof predict` on the same files prints the same answers.
    folder = files[0].parent.parent
    res = tp("predict", str(image_run), "--input", str(folder), cwd=image_run)
    assert res.returncode == 0, res.stderr
    cli = {json.loads(line)["file"]: json.loads(line) for line in res.stdout.splitlines()}
    for f, served in zip(files, as_json, strict=True):
        rec = cli[str(f)]
        assert {"label": rec["label"], "probabilities": rec["probabilities"]} == served


def test_every_image_limit_is_a_4xx_that_names_it(image_run: Path) -> None:
    files, _ = _test_files(image_run)
    good = files[0].read_bytes()
    settings = _settings(max_images=2, max_image_bytes=4096, max_image_pixels=64 * 64, max_body_bytes=65536)
    with running(create_app(image_run, settings)) as base:
        wait_ready(base)

        def post(images: list[str]) -> httpx.Response:
            return httpx.post(f"{base}/predict", json={"images": images})

        r = post([_b64(good)] * 3)
        assert r.status_code == 422 and r.json()["error"]["limit"] == "max_images"
        noise = np.random.default_rng(0).integers(0, 256, (60, 60, 3), dtype=np.uint8)
        big = _png(Image.fromarray(noise))  # incompressible: over 4096 bytes, under the pixel limit
        assert len(big) > 4096
        r = post([_b64(big)])
        assert r.status_code == 422 and r.json()["error"]["limit"] == "max_image_bytes"
        # A decompression bomb in miniature: 2,000 x 2,000 pixels in a few kilobytes.
        bomb = _png(Image.new("L", (2000, 2000)))
        assert len(bomb) < 4096
        r = post([_b64(bomb)])
        body = r.json()["error"]
        assert r.status_code == 422 and body["limit"] == "max_image_pixels" and "images[0]" in body["message"]
        r = post([_b64(_png(Image.new("RGB", (20, 20)), "TIFF"))])
        assert r.status_code == 415 and "TIFF" not in r.json()["error"]["message"].split("(")[1]
        r = post([_b64(_png(Image.new("I;16", (20, 20))))])
        assert r.status_code == 422 and "mode" in r.json()["error"]["message"]
        r = post(["not base64!"])
        assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_image"
        r = post([])
        assert r.status_code == 422 and r.json()["error"]["type"] == "invalid_request"
        r = httpx.post(f"{base}/predict", json={"texts": ["a text"]})
        assert r.status_code == 422
        r = httpx.post(
            f"{base}/predict/upload", files=[("files", (f"{i}.png", good, "image/png")) for i in range(3)]
        )
        assert r.status_code == 422 and r.json()["error"]["limit"] == "max_images"
        r = httpx.post(f"{base}/predict/upload", files=[("files", ("big.png", big, "image/png"))])
        body = r.json()["error"]
        assert r.status_code == 422 and body["limit"] == "max_image_bytes" and "big.png" in body["message"]
        r = httpx.post(f"{base}/predict", json={"images": [_b64(big) * 10]})
        assert r.status_code == 413 and r.json()["error"]["limit"] == "max_body_bytes"
        metrics = httpx.get(f"{base}/metrics").text
        for reason in ("max_images", "max_image_bytes", "max_image_pixels", "unsupported_image"):
            assert f'tuneproof_refused_requests_total{{reason="{reason}"}}' in metrics


def test_a_file_corrupt_past_its_header_fails_only_its_own_request(image_run: Path) -> None:
    files, _ = _test_files(image_run)
    good = files[0].read_bytes()
    truncated = good[: len(good) // 2]  # the header (size, mode) reads; the pixels do not
    # A wide batching window merges the two requests into one model call.
    settings = ServeSettings(batching=Batching(window_ms=3000), limits=Limits(queue_deadline_s=20))
    with running(create_app(image_run, settings)) as base:
        wait_ready(base)
        out: dict[str, httpx.Response] = {}

        def send(name: str, data: bytes) -> None:
            out[name] = httpx.post(f"{base}/predict", json={"images": [_b64(data)]}, timeout=30)

        threads = [threading.Thread(target=send, args=a) for a in (("good", good), ("bad", truncated))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        metrics = httpx.get(f"{base}/metrics").text
    assert out["good"].status_code == 200
    assert out["bad"].status_code == 422 and out["bad"].json()["error"]["type"] == "invalid_image"
    assert "images[0]" in out["bad"].json()["error"]["message"]
    assert "tuneproof_batch_requests_count 1.0" in metrics  # they were one merged batch


def test_auth_and_metrics_are_the_texts(image_run: Path) -> None:
    files, _ = _test_files(image_run)
    good = files[0].read_bytes()
    app = create_app(image_run, keys=ApiKeys((key_digest(KEY).encode(),)))
    with running(app) as base:
        wait_ready(base)
        for call in (
            lambda h: httpx.post(f"{base}/predict", json={"images": [_b64(good)]}, headers=h),
            lambda h: httpx.post(
                f"{base}/predict/upload", files=[("files", ("a.png", good, "image/png"))], headers=h
            ),
        ):
            assert call({}).status_code == 401
            assert call({"Authorization": f"Bearer {KEY}"}).status_code == 200
        metrics = httpx.get(f"{base}/metrics").text
    assert "tuneproof_input_image_bytes_count 2.0" in metrics
    assert "tuneproof_input_image_pixels_count 2.0" in metrics
    assert 'tuneproof_http_requests_total{method="POST",route="/predict/upload",status="401"} 1.0' in metrics
    assert "tuneproof_predicted_labels_total" in metrics


def test_what_images_cannot_be_served_with_is_refused_by_name(image_run: Path) -> None:
    with pytest.raises(ServeConfigError, match="--backend torch"):
        create_app(image_run, ServeSettings(backend="onnx"))


def test_capture_records_each_image_by_hash_and_header_never_its_pixels(
    image_run: Path, tmp_path: Path
) -> None:
    import hashlib

    files, _ = _test_files(image_run)
    cap = tmp_path / "cap"
    settings = ServeSettings(capture=Capture(folder=cap, max_file_bytes=1024, max_files=2))
    with running(create_app(image_run, settings)) as base:
        wait_ready(base)
        answers = []
        for f in files[:6]:  # one request each, so the files roll over (1 KiB each) and are pruned
            r = httpx.post(f"{base}/predict", json={"images": [_b64(f.read_bytes())]})
            assert r.status_code == 200, r.text
            answers += r.json()["predictions"]
        r = httpx.post(
            f"{base}/predict/upload",
            files=[("files", ("scan-of-jane.doe@example.com.png", _png(Image.open(files[0])), "image/png"))],
        )
        assert r.status_code == 200, r.text
        answers += r.json()["predictions"]
    kept = sorted(cap.glob("capture-*.jsonl"))
    assert 1 <= len(kept) <= 2  # bounded: the oldest files were deleted
    records = [json.loads(line) for f in kept for line in f.read_text().splitlines()]
    assert records and len(records) < 7
    by_hash = {hashlib.sha256(f.read_bytes()).hexdigest(): f for f in files[:6]}
    for rec in records:
        img = rec["image"]
        assert set(img) == {"sha256", "bytes", "format", "width", "height", "mode", "brightness", "contrast"}
        assert img["format"] == "PNG" and img["width"] > 0 and rec["task"] == "image_classification"
        assert 0.0 < img["brightness"] < 1.0 and 0.0 < img["contrast"] < 0.5
        assert "data" not in rec and "pixels" not in rec
        if rec["route"] == "/predict" and rec["text"].startswith("images["):
            src = by_hash[img["sha256"]]  # the hash names the very file that was sent
            assert img["bytes"] == src.stat().st_size
    last = records[-1]  # the upload: named by its position; the file's own name is not kept
    assert last["text"] == "files[0]" and last["route"] == "/predict" and last["prediction"] == answers[-1]
    assert not any("jane.doe" in f.read_text() for f in kept)
    # Every line stays under what a 1 KiB file can hold plus one record: no image bytes in it.
    assert all(len(line) < 1024 for f in kept for line in f.read_text().splitlines())
