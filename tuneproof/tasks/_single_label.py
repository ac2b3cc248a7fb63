"""What every single-label classification task (texts or images) does with a row of class
probabilities: validation scores, the per-row prediction table and the response format. One place, so
the text and image tasks cannot drift apart in what `predict`, `serve` and early stopping see."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd


def validation_scores(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Loss, accuracy and macro-F1 of ``probs`` (rows of class probabilities) against labels ``y``."""
    from sklearn.metrics import accuracy_score, f1_score

    pred = probs.argmax(1)
    p_true = np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)
    return {
        "loss": float(-np.log(p_true).mean()),
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
    }


def prediction_frame(labels: Sequence[str], df: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
    """One row per input: its id, given label, predicted label and a probability column per class."""
    out = pd.DataFrame(
        {
            "row_id": df["row_id"].to_numpy(),
            "label": df["label"].to_numpy(),
            "pred": [labels[i] for i in probs.argmax(1)],
        }
    )
    for j, lab in enumerate(labels):
        out[f"prob_{lab}"] = probs[:, j]
    return out


def format_prediction(labels: Sequence[str], probs: np.ndarray) -> list[dict[str, Any]]:
    """The `predict` / `serve` answer per input: the top label and every class's probability."""
    return [
        {
            "label": labels[int(p.argmax())],
            "probabilities": {lab: round(float(v), 6) for lab, v in zip(labels, p, strict=True)},
        }
        for p in probs
    ]
