"""An image protocol through the CLI: validate, run (with augmentation, the linear probe and near
duplicates planted across splits), verify, and predict on a folder and on a bad file. Resume with
augmentation: a run killed (SIGKILL) after a checkpoint and resumed with `run --resume` equals an
uninterrupted one bit for bit, with LoRA on (the loop-level test, full fine-tuning, is in
tests/unit/test_images_train.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from image_helpers import near_copy, write_image_folder, write_tiny_vit

pytestmark = pytest.mark.integration
PLANTED = 4

PROTOCOL = """
name: tiny-images
task: image_classification
seed: 11
model: {{source: vit}}
data:
  splits: {{train: [train], validation: [val], test: [test]}}
images:
  augment: {{hflip: 0.5, rotation: {{degrees: 10, p: 0.5}}, color_jitter: {{brightness: 0.1, p: 0.5}}}}
leakage: {{action: remove}}
train: {{epochs: 4, batch_size: 16, learning_rate: 0.003, scheduler: constant, precision: fp32{extra}}}
evaluate: {{bootstrap_samples: 200}}
gates:
  - {{metric: accuracy, beats: majority, by: 0.2}}
  - {{metric: accuracy, min: 0.6}}
"""


def tp(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tuneproof", *args],
        cwd=cwd,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=600,
    )


def _folder(d: Path, extra: str = "") -> Path:
    write_tiny_vit(d / "vit")
    train = write_image_folder(d / "train", 24, seed=1)
    write_image_folder(d / "val", 6, seed=2)
    test = write_image_folder(d / "test", 10, seed=3)
    for i in range(PLANTED):  # the same pictures as training images, one grey level brighter
        near_copy(train / "green" / f"green-1-{i}.png", test / "green" / f"planted-{i}.png")
    (d / "protocol.yaml").write_text(PROTOCOL.format(extra=extra))
    return d / "protocol.yaml"


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("images")
    proto = _folder(d)
    assert tp("validate", str(proto), cwd=d).returncode == 0
    res = tp("run", str(proto), "--output-dir", str(d / "runs"), cwd=d)
    assert res.returncode == 0, res.stderr[-3000:]
    (run_dir,) = (d / "runs").iterdir()
    return run_dir


def test_the_run_finds_and_removes_near_duplicates_planted_across_splits(image_run: Path) -> None:
    report = json.loads((image_run / "data_report.json").read_text())
    leak = report["leakage"]
    assert (leak["exact"], leak["near"], leak["removed"]) == (0, PLANTED, {"test": PLANTED})
    test = pd.read_parquet(image_run / "data" / "test.parquet")
    assert len(test) == 30 and not any("planted" in Path(t).name for t in test["text"])
    stage = next(s for s in report["stages"] if s["stage"] == "leakage")
    assert stage["removed"] == PLANTED and all("planted" in e["row_id"] for e in stage["examples"])


def test_the_run_passes_its_gates_against_both_baselines(image_run: Path) -> None:
    metrics = json.loads((image_run / "metrics.json").read_text())
    assert set(metrics["baselines"]) == {"majority", "linear_probe"}
    assert "accuracy" in metrics["comparisons"]["linear_probe"]
    gates = json.loads((image_run / "gates.json").read_text())
    assert gates["passed"] is True
    manifest = json.loads((image_run / "manifest.json").read_text())
    assert manifest["status"] == "passed" and manifest["task"] == "image_classification"
    assert (image_run / "model" / "model.safetensors").is_file()
    assert (image_run / "model" / "preprocessor_config.json").is_file()
    html = (image_run / "report.html").read_text()
    assert "Data: augmentation of training images" in html and "Most confidently wrong test images" in html
    assert html.count("data:image/png;base64,") >= 6 * 6  # the grid: 6 images, original + 5 epochs
    assert tp("verify", str(image_run), cwd=image_run).returncode == 0


def _capture_window(run: Path, folder: Path, darken: float = 1.0) -> Path:
    """Capture records as `serve --capture` writes them, of the run's own test images (optionally
    darkened), with the served model's predictions, and the true labels in a file beside them."""
    import io

    import numpy as np
    from PIL import Image

    from tuneproof.serve.capture import describe_image
    from tuneproof.serve.predict import Predictor

    test = pd.read_parquet(run / "data" / "test.parquet")
    pngs = []
    for png in test["image"]:
        a = np.asarray(Image.open(io.BytesIO(bytes(png))).convert("RGB"), dtype=np.float64) * darken
        buf = io.BytesIO()
        Image.fromarray(a.astype(np.uint8)).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    predictor = Predictor.load(run)
    preds = predictor.predict_images([f"images[{i}]" for i in range(len(pngs))], pngs)
    folder.mkdir()
    with (folder / "capture-20261203T100000Z-1-0001.jsonl").open("w") as f:
        for i, (png, p) in enumerate(zip(pngs, preds, strict=True)):
            rec = {"time": f"2026-12-03T10:00:{i:02d}+00:00", "route": "/predict", "text": f"images[{i}]"}
            rec.update(prediction=p, image=describe_image(png, predictor.tokenizer.size))
            f.write(json.dumps(rec) + "\n")
    with (folder.parent / f"{folder.name}-labels.jsonl").open("w") as f:
        f.writelines(json.dumps({"label": lab}) + "\n" for lab in test["label"])
    return folder


def test_monitor_reads_image_capture_records(image_run: Path, tmp_path: Path) -> None:
    assert (image_run / "image_reference" / "reference.parquet").is_file()
    same = _capture_window(image_run, tmp_path / "same")
    res = tp(
        "monitor",
        str(image_run),
        "--window",
        str(same),
        "--labels",
        str(tmp_path / "same-labels.jsonl"),
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    (out,) = [d for d in (image_run / "monitoring").iterdir() if d.is_dir()]
    report = json.loads((out / "monitoring.json").read_text())
    tests = {t["name"]: t for t in report["drift"]["tests"]}
    assert set(tests) == {
        "brightness",
        "contrast",
        "image_modes",
        "image_size",
        "predicted_labels",
        "confidence",
    }
    # The test split itself, as served: the same luminance, mode and predictions as the reference.
    assert tests["brightness"]["statistic"] == 0.0 and tests["predicted_labels"]["statistic"] == 0.0
    assert report["window"]["predictions"] == "as captured" and report["performance"]["degraded"] == []
    dark = _capture_window(image_run, tmp_path / "dark", darken=0.5)
    res = tp("monitor", str(image_run), "--window", str(dark), cwd=tmp_path)
    assert res.returncode == 13, res.stdout + res.stderr  # DriftDetected
    assert "brightness" in res.stdout + res.stderr


def test_predict_reads_a_folder_of_images_and_names_a_bad_one(image_run: Path, tmp_path: Path) -> None:
    inputs = write_image_folder(tmp_path / "new", 3, seed=9)
    res = tp("predict", str(image_run), "--input", str(inputs), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(lines) == 9 and all(set(r) == {"file", "label", "probabilities"} for r in lines)
    # Tinted noise is easy: the true colour is the folder's name.
    right = sum(Path(r["file"]).parent.name == r["label"] for r in lines)
    assert right >= 7
    (inputs / "red" / "broken.png").write_bytes(b"not a png")
    res = tp("predict", str(image_run), "--input", str(inputs), cwd=tmp_path)
    assert res.returncode == 3 and "broken.png" in res.stderr


# SIGKILLs the run right after the checkpoint of step KILL_STEP is complete (its marker written).
KILLER = """
import os, signal, sys
import tuneproof.train.checkpoint as ck
kill_step = int(os.environ["KILL_STEP"])
original = ck.write_json_durable
def write(path, obj):
    original(path, obj)
    if path.name == ck.MANIFEST and obj.get("step") == kill_step:
        os.kill(os.getpid(), signal.SIGKILL)
ck.write_json_durable = write
from tuneproof.cli import main
sys.argv = ["tuneproof", *sys.argv[1:]]
main()
"""
RESUMABLE = ", checkpoint_every_steps: 3, method: lora, lora: {r: 4, alpha: 8}"


def _losses(run: Path) -> list[float]:
    return [e["loss"] for e in json.loads((run / "training" / "log_history.json").read_text()) if "loss" in e]


def _sha(run: Path) -> str:
    return hashlib.sha256((run / "model" / "model.safetensors").read_bytes()).hexdigest()


def test_an_interrupted_image_run_resumes_bit_identically_through_the_cli(tmp_path: Path) -> None:
    straight_dir, cut_dir = tmp_path / "straight", tmp_path / "cut"
    straight_dir.mkdir()
    cut_dir.mkdir()
    proto = _folder(straight_dir, RESUMABLE)
    res = tp("run", str(proto), "--output-dir", str(straight_dir / "runs"), cwd=straight_dir)
    assert res.returncode == 0, res.stderr[-3000:]
    (straight,) = (straight_dir / "runs").iterdir()
    proto = _folder(cut_dir, RESUMABLE)
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, "run", str(proto), "--output-dir", str(cut_dir / "runs")],
        cwd=cut_dir,
        env={**os.environ, "KILL_STEP": "6"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    (cut,) = (cut_dir / "runs").iterdir()
    assert not (cut / "model" / "model.safetensors").exists()
    res = tp("run", "--resume", str(cut), cwd=cut_dir)
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((cut / "training" / "summary.json").read_text())
    # The marker of step 6 is written before its folder is renamed into place: the newest
    # complete checkpoint is then the end of epoch 1 (step 5).
    assert summary["resumed_from"].endswith("checkpoint-5")
    assert _losses(cut) == _losses(straight) and len(_losses(straight)) > 6
    assert _sha(cut) == _sha(straight)  # the same merged weights, bit for bit
    assert (cut / "adapter").is_dir()
    for part in ("comparisons", "baselines"):
        assert (
            json.loads((cut / "metrics.json").read_text())[part]
            == json.loads((straight / "metrics.json").read_text())[part]
        )
    pd.testing.assert_frame_equal(
        pd.read_parquet(cut / "predictions" / "test.parquet"),
        pd.read_parquet(straight / "predictions" / "test.parquet"),
        check_exact=True,
    )
