"""Monitoring an image model from generated capture records (what `serve --capture` writes: hash,
header and luminance, never pixels) against a reference written from a generated test split:
quiet on the same distribution, alarming on darker images, another mode and shifted predictions;
labelled feedback compared with the release; a window without predictions refused."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tuneproof.errors import DataValidationError
from tuneproof.monitor.check import image_monitor_spec, verdict_of
from tuneproof.monitor.images import (
    DEFAULT_IMAGE_ALARMS,
    image_drift_tests,
    load_image_reference,
    window_sample,
    write_image_reference,
)
from tuneproof.monitor.window import read_window
from tuneproof.protocol.schema import MonitorSpec
from tuneproof.serve.capture import describe_image
from tuneproof.tasks._single_label import format_prediction

LABELS = ["cat", "dog", "fox"]


class FakeImageTask:
    """What write_image_reference asks of a task: its name, labels and prediction records."""

    name = "image_classification"
    labels = LABELS

    def format_prediction(self, probs: np.ndarray) -> list[dict[str, Any]]:
        return format_prediction(self.labels, probs)


def _png(rng: np.random.Generator, size: int, level: float, mode: str = "RGB") -> bytes:
    a = np.clip(rng.normal(level, 0.15, (size, size, 3)), 0, 1)
    img = Image.fromarray((a * 255).astype(np.uint8), mode="RGB")
    buf = io.BytesIO()
    (img.convert("L") if mode == "L" else img).save(buf, format="PNG")
    return buf.getvalue()


def _as_prepared(png: bytes, size: int = 24) -> bytes:
    """A 30 px original as the data stage stores it: RGB at the model's input size."""
    from tuneproof.data.images import RESAMPLE

    buf = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").resize((size, size), RESAMPLE).save(buf, format="PNG")
    return buf.getvalue()


def _probs(rng: np.random.Generator, n: int, favour: int | None = None) -> np.ndarray:
    logits = rng.normal(0, 1.5, (n, 3))
    if favour is not None:
        logits[:, favour] += 3.0
    e = np.exp(logits)
    return e / e.sum(1, keepdims=True)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 200
    probs = _probs(rng, n)
    test = pd.DataFrame(
        {
            "row_id": [f"r{i}" for i in range(n)],
            "label": [LABELS[int(np.argmax(p))] if i % 5 else LABELS[i % 3] for i, p in enumerate(probs)],
            "image": [_as_prepared(_png(rng, 30, 0.5)) for _ in range(n)],
        }
    )
    report = {"images": {"modes": {"RGB": 900}, "width": {"min": 20, "max": 40, "mean": 28.0}}}
    report["images"]["height"] = {"min": 20, "max": 40, "mean": 28.0}
    (tmp_path / "data_report.json").write_text(json.dumps(report))
    (tmp_path / "metrics.json").write_text(json.dumps({"model": {}}))
    write_image_reference(tmp_path, FakeImageTask(), test, probs)
    return tmp_path


def _records(
    rng: np.random.Generator,
    n: int,
    level: float = 0.5,
    mode: str = "RGB",
    favour: int | None = None,
    size: int = 30,
) -> list[dict[str, Any]]:
    preds = format_prediction(LABELS, _probs(rng, n, favour))
    return [
        {
            "time": f"2026-12-03T10:{i // 60:02d}:{i % 60:02d}+00:00",
            "route": "/predict",
            "text": f"images[{i}]",
            "prediction": p,
            "task": "image_classification",
            "pii": "scrubbed",
            "image": describe_image(_png(rng, size, level, mode), 24),  # 24: the model's input size
        }
        for i, p in enumerate(preds)
    ]


def _write(folder: Path, records: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "capture-20261203T100000Z-1-0001.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records)
    )
    return folder


def _verdict(run_dir: Path, folder: Path) -> dict[str, Any]:
    ref = load_image_reference(run_dir)
    w = read_window(folder, 500, ref.labels)
    win = window_sample(w.images, w.predictions, ref.labels, w.labels, w.where, w.source)
    spec = image_monitor_spec(MonitorSpec())
    tests = image_drift_tests(ref, win)
    return verdict_of(tests, spec, len(ref.sample.observed))


def _tests(v: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in v["tests"]}


def test_the_reference_keeps_luminance_predictions_and_the_data_stages_header_summary(run_dir: Path) -> None:
    ref = load_image_reference(run_dir)
    assert len(ref.sample.observed) == 200 and ref.labels == LABELS
    assert 0.4 < float(np.median(ref.sample.brightness)) < 0.6  # generated around 0.5
    assert ref.sample.modes == {"RGB": 900} and ref.info["width"]["max"] == 40
    assert ref.sample.observed.probabilities is not None and ref.sample.observed.probabilities.shape == (
        200,
        3,
    )
    assert set(ref.sample.observed.category) <= set(LABELS)
    # Not under reference/: serve's live text-drift gauges read that folder.
    assert not (run_dir / "reference").exists()


def test_a_window_like_the_test_split_stays_quiet(run_dir: Path, tmp_path: Path) -> None:
    v = _verdict(run_dir, _write(tmp_path / "same", _records(np.random.default_rng(1), 150)))
    t = _tests(v)
    assert not v["alarm"], v["alarming_tests"]
    assert [x["name"] for x in v["tests"]] == [
        "brightness",
        "contrast",
        "image_modes",
        "image_size",
        "predicted_labels",
        "confidence",
    ]
    assert all(
        t[n]["p_value"] is not None for n in [*DEFAULT_IMAGE_ALARMS[:2], "predicted_labels", "confidence"]
    )
    assert t["image_modes"]["note"] == "one mode on both sides"
    assert t["image_size"]["p_value"] is None and t["image_size"]["detail"]["window_share_outside"] == 0.0
    assert v["level_per_test"] == pytest.approx(0.05 / 5)


def test_darker_images_alarm_on_brightness_and_not_on_predictions(run_dir: Path, tmp_path: Path) -> None:
    v = _verdict(run_dir, _write(tmp_path / "dark", _records(np.random.default_rng(2), 150, level=0.3)))
    t = _tests(v)
    assert "brightness" in v["alarming_tests"] and "predicted_labels" not in v["alarming_tests"]
    assert t["brightness"]["detail"]["window_median"] < t["brightness"]["detail"]["reference_median"] - 0.1


def test_greyscale_uploads_alarm_on_image_modes(run_dir: Path, tmp_path: Path) -> None:
    v = _verdict(run_dir, _write(tmp_path / "grey", _records(np.random.default_rng(3), 150, mode="L")))
    t = _tests(v)
    assert "image_modes" in v["alarming_tests"]
    assert t["image_modes"]["detail"]["modes"] == ["L", "RGB"]
    assert t["image_modes"]["detail"]["window_share"] == [1.0, 0.0]


def test_a_prior_shift_alarms_on_predicted_labels_and_large_images_are_counted(
    run_dir: Path, tmp_path: Path
) -> None:
    records = _records(np.random.default_rng(4), 150, favour=2, size=64)
    v = _verdict(run_dir, _write(tmp_path / "fox", records))
    t = _tests(v)
    assert "predicted_labels" in v["alarming_tests"]
    fox = t["predicted_labels"]["detail"]["categories"].index("fox")
    assert t["predicted_labels"]["detail"]["window_share"][fox] > 0.7
    assert t["image_size"]["detail"]["window_share_outside"] == 1.0  # 64 px, the data stage read <= 40
    assert not t["image_size"]["alarm"]  # reported only


def test_a_protocols_own_alarm_list_is_kept() -> None:
    spec = MonitorSpec(alarm_on=["brightness"])
    assert image_monitor_spec(spec).alarm_on == ["brightness"]
    assert image_monitor_spec(MonitorSpec()).alarm_on == DEFAULT_IMAGE_ALARMS


def test_an_image_window_needs_captured_predictions_and_image_descriptions(
    run_dir: Path, tmp_path: Path
) -> None:
    records = _records(np.random.default_rng(5), 40)
    for r in records:
        del r["prediction"]
    w = read_window(_write(tmp_path / "nopred", records), 500, LABELS)
    assert w.images is not None and len(w.images) == 40
    with pytest.raises(DataValidationError, match="cannot predict again"):
        window_sample(w.images, w.predictions, LABELS, w.labels, w.where, w.source)
    text_like = [
        {"text": f"t{i}", "prediction": r}
        for i, r in enumerate(format_prediction(LABELS, _probs(np.random.default_rng(6), 40)))
    ]
    w = read_window(_write(tmp_path / "noimage", text_like), 500, LABELS)
    assert w.images is None
    with pytest.raises(DataValidationError, match="'image' description"):
        window_sample(w.images, w.predictions, LABELS, w.labels, w.where, w.source)


def test_a_header_the_reader_rejected_still_makes_a_record_without_luminance() -> None:
    d = describe_image(b"not an image at all")
    assert d["bytes"] == 19 and d["mode"] is None and d["brightness"] is None and d["contrast"] is None
    good = describe_image(_png(np.random.default_rng(7), 16, 0.8))
    assert good["mode"] == "RGB" and good["width"] == 16 and 0.7 < good["brightness"] < 0.9
