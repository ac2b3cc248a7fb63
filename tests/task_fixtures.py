"""Toy data for the token classification, regression and multi-label tests, built from the tiny
BERT's vocabulary (tests/helpers.py) so every word is one known token."""

from __future__ import annotations

import json
import random
from pathlib import Path

from helpers import NEGATIVE, NEUTRAL, POSITIVE


def toy_ner(n: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """Sentences where a positive word is a one-word GOOD entity and two negative words in a row a
    two-word BAD entity; the rest are neutral filler."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(2, 7))]
        tags = ["O"] * len(words)
        if rng.random() < 0.8:
            i = rng.randrange(len(words) + 1)
            words.insert(i, rng.choice(POSITIVE))
            tags.insert(i, "B-GOOD")
        if rng.random() < 0.6:
            i = rng.randrange(len(words) + 1)
            words[i:i] = [rng.choice(NEGATIVE), rng.choice(NEGATIVE)]
            tags[i:i] = ["B-BAD", "I-BAD"]
        out.append((words, tags))
    return out


def write_conll(path: Path, sentences: list[tuple[list[str], list[str]]], sep: str = "\t") -> Path:
    path.write_text(
        "".join("".join(f"{w}{sep}{t}\n" for w, t in zip(ws, ts, strict=True)) + "\n" for ws, ts in sentences)
    )
    return path


def toy_scores(n: int, seed: int = 0) -> list[dict[str, object]]:
    """Texts scored by (#positive - #negative words) plus a little noise: a learnable target."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        pos, neg = rng.randint(0, 3), rng.randint(0, 3)
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(2, 6))]
        for w in [rng.choice(POSITIVE) for _ in range(pos)] + [rng.choice(NEGATIVE) for _ in range(neg)]:
            words.insert(rng.randrange(len(words) + 1), w)
        rows.append({"text": " ".join(words) + f" {i}", "score": round(pos - neg + rng.gauss(0, 0.1), 3)})
    return rows


def toy_multilabel(n: int, seed: int = 0) -> list[dict[str, object]]:
    """Labels ``pos`` / ``neg`` when the text holds a positive / negative word: none, one or both."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for i in range(n):
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(2, 6))]
        labels: list[str] = []
        if rng.random() < 0.5:
            words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE))
            labels.append("pos")
        if rng.random() < 0.4:
            words.insert(rng.randrange(len(words) + 1), rng.choice(NEGATIVE))
            labels.append("neg")
        rows.append({"text": " ".join(words) + f" {i}", "labels": labels})
    return rows


def write_rows(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def protocol_text(
    task: str,
    model_dir: Path,
    data_block: str,
    extra: str = "",
    epochs: int = 6,
    lr: str = "0.003",
    gates: str = "",
) -> str:
    return f"""
name: tiny-{task.replace("_", "-")}
task: {task}
seed: 7
model:
  source: {model_dir}
  max_length: 32
data:
{data_block}
cleaning:
  near_duplicates: {{enabled: false}}
train:
  epochs: {epochs}
  scheduler: constant
  batch_size: 16
  learning_rate: {lr}
  precision: fp32
evaluate:
  bootstrap_samples: 200
{extra}
gates:
{gates or "  []"}
"""
