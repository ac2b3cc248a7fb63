"""The run's reference for monitoring: its test split as the released model saw it.

Written at packaging time into ``<run>/reference/`` (so the manifest hashes it like every other file):

    reference.parquet        row_id, text, label, category, confidence, score, length, unk_rate
    tensors.safetensors      embeddings [n, d] float32, probabilities [n, k] (classification)
    reference.json           task, labels, row count, how the embeddings were made

No pickle anywhere: parquet for the table, safetensors for the arrays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuneproof.errors import RunFolderError
from tuneproof.monitor.features import Observed
from tuneproof.monitor.reference_dir import write_reference_dir

REFERENCE_DIR = "reference"
# Generative tasks produce free text, not labels or scores to compare; they are not monitored yet.
MONITORED_TASKS = ("classification", "multilabel", "regression", "token_classification")


@dataclass
class Reference:
    observed: Observed
    task: str
    labels: list[str]
    info: dict[str, Any]


def write_reference(run_dir: Path, task: Any, test: pd.DataFrame, outputs: Any) -> Path | None:
    """Store the test split's inputs, predictions, confidences and embeddings beside the packaged model.

    ``outputs`` are the task's test predictions (the ones ``metrics.json`` was computed from); the
    embeddings come from the packaged model in ``run_dir/model``, loaded exactly as ``serve`` and
    ``monitor`` load it, so a window is embedded the same way later. Returns None for tasks that are
    not monitored (generative ones).
    """
    from tuneproof.monitor.images import IMAGE_TASKS, write_image_reference

    if task.name in IMAGE_TASKS:
        return write_image_reference(run_dir, task, test, outputs)
    if task.name not in MONITORED_TASKS:
        return None

    from tuneproof.monitor.observe import observe
    from tuneproof.serve.predict import Predictor

    predictor = Predictor.load(run_dir)
    preds = task.format_prediction(np.asarray(outputs) if not isinstance(outputs, list) else outputs)
    labels = [None if _missing(x) else _label_text(x) for x in test["label"]] if "label" in test else None
    obs = observe(predictor, test["text"].tolist(), preds, None)
    frame = pd.DataFrame(
        {
            "row_id": test["row_id"].astype(str).to_numpy(),
            "text": obs.texts,
            "label": labels if labels is not None else [None] * len(obs),
            "category": obs.category,
            "confidence": obs.confidence,
            "score": obs.score,
            "length": obs.lengths,
            "unk_rate": obs.unk_rate,
        }
    )
    tensors = {"embeddings": np.ascontiguousarray(obs.embeddings, dtype=np.float32)}
    if obs.probabilities is not None:
        tensors["probabilities"] = np.ascontiguousarray(obs.probabilities, dtype=np.float64)
    info = {
        "format": 1,
        "task": task.name,
        "labels": list(task.labels),
        "rows": len(obs),
        "split": "test",
        "embeddings": {
            "model": "the run's packaged model",
            "pooling": "mean of the last hidden state over real tokens",
            "dim": int(tensors["embeddings"].shape[1]),
        },
        "lengths": "tokens per text, untruncated, without special tokens",
    }
    return write_reference_dir(Path(run_dir) / REFERENCE_DIR, frame, tensors, info)


def _missing(x: Any) -> bool:
    # Not pd.isna: on a list (multi-label labels, NER tags) it answers element by element.
    return x is None or (isinstance(x, float) and np.isnan(x))


def _label_text(x: Any) -> str:
    # Multilabel rows hold lists, regression rows numbers: keep one string a window label can match.
    if isinstance(x, list | tuple | np.ndarray):
        return json.dumps([str(v) for v in x])
    return str(x)


def load_reference(run_dir: Path) -> Reference:
    """Read ``run_dir/reference`` back; a run packaged before monitoring existed has none."""
    from safetensors.numpy import load_file

    d = Path(run_dir) / REFERENCE_DIR
    needed = [d / "reference.parquet", d / "tensors.safetensors", d / "reference.json"]
    missing = [p.name for p in needed if not p.is_file()]
    if missing:
        raise RunFolderError(
            f"{run_dir} has no monitoring reference ({', '.join(missing)} missing under {d}); "
            "runs packaged by this version write one"
        )
    info = json.loads((d / "reference.json").read_text())
    frame = pd.read_parquet(d / "reference.parquet")
    tensors = load_file(str(d / "tensors.safetensors"))
    labels_col = frame["label"].tolist()
    obs = Observed(
        texts=frame["text"].astype(str).tolist(),
        lengths=frame["length"].to_numpy(dtype=np.int64),
        unk_rate=frame["unk_rate"].to_numpy(dtype=np.float64),
        category=[
            None if c is None or (isinstance(c, float) and np.isnan(c)) else str(c) for c in frame["category"]
        ],
        confidence=frame["confidence"].to_numpy(dtype=np.float64),
        score=frame["score"].to_numpy(dtype=np.float64),
        embeddings=tensors["embeddings"],
        probabilities=tensors.get("probabilities"),
        labels=None if all(x is None for x in labels_col) else [str(x) for x in labels_col],
    )
    return Reference(observed=obs, task=str(info["task"]), labels=list(info["labels"]), info=info)
