"""Monitoring an image model: the test split as its reference, and what ``serve --capture`` keeps of
a production image (its hash, header and two luminance figures, never its pixels) as the window.

What carries over from text monitoring, and what does not:

* **Predictions**: the predicted-label counts against the test split's (chi-square, PSI) and the
  top-class confidence (KS), exactly as for text. The window's predictions must be the captured
  ones: the pixels were never kept, so the model cannot predict again.
* **Inputs**: brightness and contrast (mean and standard deviation of luminance,
  ``data.images.luminance_stats``) against the test split's, by KS; the image mode against the
  modes the data stage read (chi-square on counts, from ``data_report.json``). Width and height
  are compared only with the range the data stage read (the report keeps min, mean and max, not
  each image's size): the share of window images outside it is reported, with no p-value.
* Token length, unknown tokens and the embedding classifier have no image counterpart here; an
  embedding of the image would need its pixels.
* **Labelled feedback**: the same interval comparison with the release as for text
  classification (``performance.compare_performance``), on the captured probabilities.

The reference lives in ``<run>/image_reference/`` (not ``reference/``, which ``serve``'s live
text-drift gauges read): ``reference.parquet`` (row_id, label, category, confidence, brightness,
contrast), ``tensors.safetensors`` (probabilities), ``reference.json`` (labels, modes, sizes).
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuneproof.errors import DataValidationError, Problem, RunFolderError
from tuneproof.monitor.drift import MIN_ROWS, DriftTest, counts_test, ks_test, prediction_tests
from tuneproof.monitor.features import Observed, probabilities_of, summaries
from tuneproof.monitor.reference_dir import write_reference_dir

IMAGE_TASKS = ("image_classification",)
IMAGE_REFERENCE_DIR = "image_reference"
# The alarming tests of an image run whose protocol names none: as many as text's default, so the
# per-test level under Bonferroni is the same.
DEFAULT_IMAGE_ALARMS = ["brightness", "contrast", "image_modes", "predicted_labels", "confidence"]


@dataclass
class ImageSample:
    """The reference or a window, as the image drift tests see it."""

    observed: Observed  # predictions, confidences, probabilities, labels (no text quantities)
    brightness: np.ndarray  # NaN where unknown (an image the header reader rejected)
    contrast: np.ndarray
    modes: Counter[str]
    sizes: list[tuple[int, int]]  # (width, height) where known; empty for the reference


@dataclass
class ImageReference:
    sample: ImageSample
    labels: list[str]
    info: dict[str, Any]  # reference.json: the training images' modes and size range among it


def _observed(ids: list[str], preds: Sequence[dict[str, Any]], labels: list[str], truth: Any) -> Observed:
    cats, conf, score = summaries(preds)
    n = len(ids)
    return Observed(
        texts=ids,
        lengths=np.full(n, np.nan),
        unk_rate=np.full(n, np.nan),
        category=cats,
        confidence=conf,
        score=score,
        probabilities=probabilities_of(preds, labels),
        labels=truth,
    )


def write_image_reference(run_dir: Path, task: Any, test: pd.DataFrame, outputs: Any) -> Path:
    """The test split as the released model saw it: its predictions (the ones ``metrics.json`` was
    computed from), the luminance of each test image and the header summary of the data stage."""
    from PIL import Image

    from tuneproof.data.images import luminance_stats

    preds = task.format_prediction(np.asarray(outputs))
    lum = [luminance_stats(Image.open(io.BytesIO(bytes(png)))) for png in test["image"]]
    cats, conf, _ = summaries(preds)
    frame = pd.DataFrame(
        {
            "row_id": test["row_id"].astype(str).to_numpy(),
            "label": [str(x) for x in test["label"]],
            "category": cats,
            "confidence": conf,
            "brightness": [b for b, _ in lum],
            "contrast": [c for _, c in lum],
        }
    )
    probs = probabilities_of(preds, task.labels)
    report_path = Path(run_dir) / "data_report.json"
    images = json.loads(report_path.read_text()).get("images", {}) if report_path.is_file() else {}
    info = {
        "format": 1,
        "task": task.name,
        "labels": list(task.labels),
        "rows": len(frame),
        "split": "test",
        "luminance": "mean and standard deviation of a 32 x 32 greyscale thumbnail of the image at the "
        "model's input size, in [0, 1]",
        # Of every image the data stage read (all splits), as the image files' headers gave them.
        "modes": dict(images.get("modes", {})),
        "width": images.get("width"),
        "height": images.get("height"),
    }
    tensors = None if probs is None else {"probabilities": np.ascontiguousarray(probs)}
    return write_reference_dir(Path(run_dir) / IMAGE_REFERENCE_DIR, frame, tensors, info)


def load_image_reference(run_dir: Path) -> ImageReference:
    from safetensors.numpy import load_file

    d = Path(run_dir) / IMAGE_REFERENCE_DIR
    if not (d / "reference.parquet").is_file() or not (d / "reference.json").is_file():
        raise RunFolderError(
            f"{run_dir} has no image monitoring reference (under {d}); image runs packaged by this "
            "version write one"
        )
    info = json.loads((d / "reference.json").read_text())
    frame = pd.read_parquet(d / "reference.parquet")
    tensors = d / "tensors.safetensors"
    probs = load_file(str(tensors))["probabilities"] if tensors.is_file() else None
    n = len(frame)
    obs = Observed(
        texts=frame["row_id"].astype(str).tolist(),
        lengths=np.full(n, np.nan),
        unk_rate=np.full(n, np.nan),
        category=[str(c) for c in frame["category"]],
        confidence=frame["confidence"].to_numpy(dtype=np.float64),
        score=np.full(n, np.nan),
        probabilities=probs,
        labels=[str(x) for x in frame["label"]],
    )
    sample = ImageSample(
        observed=obs,
        brightness=frame["brightness"].to_numpy(dtype=np.float64),
        contrast=frame["contrast"].to_numpy(dtype=np.float64),
        modes=Counter({str(k): int(v) for k, v in info.get("modes", {}).items()}),
        sizes=[],
    )
    return ImageReference(sample, list(info["labels"]), info)


def _number(x: Any) -> float:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else math.nan


def window_sample(
    images: Sequence[dict[str, Any]] | None,
    predictions: Sequence[dict[str, Any]] | None,
    labels: list[str],
    truth: list[str] | None,
    where: Sequence[str],
    source: str,
) -> ImageSample:
    """A window of capture records of an image model: each needs its ``image`` description and the
    prediction the server made (the model cannot see the image again)."""
    problems = []
    if predictions is None:
        problems.append(
            Problem(
                source,
                "an image window needs the captured 'prediction' of every record: the "
                "pixels are not kept, so the model cannot predict again",
            )
        )
    if images is None:
        problems.append(
            Problem(
                source,
                "an image window needs the 'image' description of every record "
                "(what `serve --capture` writes for an image model)",
            )
        )
    if problems:
        raise DataValidationError(problems, f"window {source}")
    assert images is not None and predictions is not None
    sizes = [
        (int(im["width"]), int(im["height"]))
        for im in images
        if isinstance(im.get("width"), int) and isinstance(im.get("height"), int)
    ]
    return ImageSample(
        observed=_observed(list(where), predictions, labels, truth),
        brightness=np.array([_number(im.get("brightness")) for im in images]),
        contrast=np.array([_number(im.get("contrast")) for im in images]),
        modes=Counter(str(im["mode"]) for im in images if isinstance(im.get("mode"), str)),
        sizes=sizes,
    )


def mode_test(ref: Counter[str], win: Counter[str]) -> DriftTest:
    """Chi-square of homogeneity on image-mode counts (RGB, L, RGBA, ...), PSI as the effect size.

    The reference counts are those of every image the data stage read."""
    return counts_test(
        "image_modes",
        "chi-square on image-mode counts (window vs the images the data stage read)",
        ref,
        win,
        "modes",
        few=f"fewer than {MIN_ROWS} known modes on a side",
        single="one mode on both sides",
    )


def size_check(info: dict[str, Any], sizes: Sequence[tuple[int, int]]) -> DriftTest:
    """The share of window images wider or taller than any, or narrower or shorter than every,
    image the data stage read. No p-value: the reference keeps the range, not each size."""
    method = "share of window images outside the training images' width and height range"
    w, h = info.get("width"), info.get("height")
    if not w or not h or not sizes:
        return DriftTest("image_size", method, None, note="no sizes on one side")
    outside = [not (w["min"] <= x <= w["max"] and h["min"] <= y <= h["max"]) for x, y in sizes]
    detail = {
        "reference_width": w,
        "reference_height": h,
        "window_width_median": float(np.median([x for x, _ in sizes])),
        "window_height_median": float(np.median([y for _, y in sizes])),
        "window_share_outside": float(np.mean(outside)),
        "window_n": len(sizes),
    }
    return DriftTest("image_size", method, None, None, detail, "reported only: the reference keeps a range")


def image_drift_tests(ref: ImageReference, win: ImageSample) -> list[DriftTest]:
    """Every image input and prediction test, in report order."""
    return [
        ks_test("brightness", ref.sample.brightness, win.brightness, "brightness (mean luminance)"),
        ks_test("contrast", ref.sample.contrast, win.contrast, "contrast (luminance standard deviation)"),
        mode_test(ref.sample.modes, win.modes),
        size_check(ref.info, win.sizes),
        *prediction_tests(ref.sample.observed, win.observed),
    ]
