"""`tuneproof suggest`: which unlabelled texts to label next, ranked by the run's model's uncertainty.

Uncertainty sampling (margin or entropy of the predicted class probabilities) with the packaged
model: the texts the model is least sure about are the ones whose label should teach it most. The
scores are two lines of numpy, so no active-learning library is needed for them; what this module
adds is the plumbing around them (pool de-duplication, texts the run already trained or was tested
on left out, and a file in the shape the data stage reads back with a ``label`` column to fill in).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from tuneproof.data.clean import dedup_key
from tuneproof.errors import RunFolderError, TuneproofError
from tuneproof.fsutil import atomic_write_text

Method = Literal["margin", "entropy"]
METHODS: tuple[str, ...] = ("margin", "entropy")
# Tasks whose model outputs one probability distribution over classes per text.
SUGGEST_TASKS = ("classification",)


def uncertainty(probs: np.ndarray, method: Method = "margin") -> np.ndarray:
    """Per row, higher = less sure. margin: 1 - (top probability - second); entropy: in nats."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError("probabilities must be [rows, classes] with at least two classes")
    if method == "margin":
        top2 = np.sort(p, axis=1)[:, -2:]
        return 1.0 - (top2[:, 1] - top2[:, 0])
    if method == "entropy":
        q = np.clip(p, 1e-12, 1.0)
        return -(q * np.log(q)).sum(axis=1)
    raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")


def rank(probs: np.ndarray, n: int, method: Method = "margin") -> np.ndarray:
    """Positions of the ``n`` most uncertain rows, most uncertain first (ties: earlier row first)."""
    scores = uncertainty(probs, method)
    return np.argsort(-scores, kind="stable")[: max(0, n)]


def _run_texts(run_dir: Path) -> set[str]:
    """Keys of every text in the run's prepared splits: suggesting one again would waste a label."""
    keys: set[str] = set()
    for path in sorted((run_dir / "data").glob("*.parquet")):
        keys.update(dedup_key(str(t)) for t in pd.read_parquet(path, columns=["text"])["text"])
    return keys


def pool_probabilities(predictor: Any, texts: Sequence[str], chunk: int = 1024) -> np.ndarray:
    """The packaged model's class probabilities for ``texts`` (the protocol's PII scrub applied)."""
    import torch

    if predictor.pii is not None:
        from tuneproof.data.pii_step import scrub_inputs

        texts = scrub_inputs(predictor.pii, list(texts))
    pad_id = predictor.tokenizer.pad_token_id if predictor.tokenizer.pad_token_id is not None else 0
    out = []
    for start in range(0, len(texts), chunk):  # bounded memory on large pools
        part = list(texts[start : start + chunk])
        df = pd.DataFrame(
            {"row_id": [str(i) for i in range(len(part))], "text": part, "label": [None] * len(part)}
        )
        feats = predictor.task.features_for_inference(df, predictor.tokenizer)
        with torch.inference_mode():
            out.append(
                np.asarray(
                    predictor.task.predict(
                        predictor.model, feats, pad_id, predictor.batch_size, predictor.precision
                    )
                )
            )
    return np.concatenate(out) if out else np.zeros((0, len(predictor.info.labels)))


def suggest(
    run_dir: Path, pool: Path, n: int, out: Path, method: Method = "margin", text_field: str = "text"
) -> dict[str, Any]:
    """Rank the pool's texts for labelling and write the top ``n`` to ``out`` (JSONL, ``label`` empty)."""
    from tuneproof.serve.predict import Predictor, read_inputs

    if n < 1:
        raise TuneproofError("--n must be at least 1")
    predictor = Predictor.load(run_dir)
    if predictor.info.task not in SUGGEST_TASKS:
        raise RunFolderError(
            f"{run_dir} is a {predictor.info.task} run; suggest ranks texts for "
            f"{', '.join(SUGGEST_TASKS)} runs"
        )
    texts = read_inputs(pool, text_field)
    seen = _run_texts(run_dir)
    keep: list[int] = []
    keys: set[str] = set()
    for i, t in enumerate(texts):
        k = dedup_key(t)
        if k and k not in keys and k not in seen:
            keys.add(k)
            keep.append(i)
    candidates = [texts[i] for i in keep]
    probs = pool_probabilities(predictor, candidates)
    order = rank(probs, n, method) if len(candidates) else np.array([], dtype=int)
    scores = uncertainty(probs, method) if len(candidates) else np.array([])
    labels = list(predictor.info.labels)
    lines = []
    for r, pos in enumerate(order, start=1):
        p = probs[pos]
        lines.append(
            json.dumps(
                {
                    text_field: candidates[pos],
                    "label": "",
                    "rank": r,
                    "pool_line": keep[pos] + 1,
                    "uncertainty": round(float(scores[pos]), 6),
                    "model_label": labels[int(p.argmax())],
                    "probabilities": {lab: round(float(v), 6) for lab, v in zip(labels, p, strict=True)},
                },
                ensure_ascii=False,
            )
        )
    atomic_write_text(out, "".join(line + "\n" for line in lines))
    return {
        "pool": len(texts),
        "duplicates_or_seen": len(texts) - len(candidates),
        "ranked": len(candidates),
        "written": len(lines),
        "method": method,
        "out": str(out),
    }
