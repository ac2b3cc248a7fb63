"""Tiny models and data built in code, so tests never download anything."""

from __future__ import annotations

import json
import random
from pathlib import Path

POSITIVE = ["good", "great", "fine", "superb", "lovely", "brilliant", "moving", "funny", "warm", "sharp"]
NEGATIVE = ["bad", "awful", "dull", "boring", "weak", "messy", "tedious", "flat", "stale", "clumsy"]
NEUTRAL = [
    "the",
    "film",
    "movie",
    "plot",
    "cast",
    "was",
    "is",
    "a",
    "very",
    "story",
    "and",
    "it",
    "acting",
    "quite",
    "really",
    "script",
    "scenes",
    "ending",
    "director",
    "music",
]
WORDS = POSITIVE + NEGATIVE + NEUTRAL


def write_tiny_bert(path: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    tok.save_pretrained(path)
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    # Saved as a bare encoder, like a real pretrained checkpoint: the task adds its own head.
    BertForSequenceClassification(cfg).bert.save_pretrained(path)
    return path


def toy_reviews(n: int, seed: int = 0, noise: float = 0.1) -> list[dict[str, str]]:
    """Short reviews whose label follows the sentiment words, with a little label noise."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(3, 12))]
        for _ in range(rng.randint(1, 3)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        if rng.random() < noise:
            label = "neg" if label == "pos" else "pos"
        rows.append(
            {"text": " ".join(words) + f" {i}", "label": label, "genre": rng.choice(["drama", "comedy"])}
        )
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_protocol(path: Path, model_dir: Path, data: Path, **overrides: str) -> Path:
    text = f"""
name: tiny
task: classification
seed: 7
model:
  source: {model_dir}
  max_length: 32
data:
  files: [{data}]
  labels: [neg, pos]
  metadata_columns: [genre]
train:
  epochs: {overrides.get("epochs", "4")}
  scheduler: constant
  batch_size: 16
  learning_rate: {overrides.get("lr", "0.003")}
  precision: fp32
evaluate:
  bootstrap_samples: 200
  slices: [{{by: column, column: genre}}, {{by: length, edges: [8]}}]
gates:
{overrides.get("gates", "  - {metric: accuracy, min: 0.6}")}
"""
    path.write_text(text)
    return path


def patient_records(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Structured rows rendered as "name: value" text, like tabular data fed to a text model: the
    numbers carry the label (risk points from age, blood pressure, cholesterol, heart rate, oldpeak),
    the template repeats on every row."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        age, bp, chol = rng.randint(28, 77), rng.randint(94, 200), rng.randint(120, 420)
        hr, oldpeak = rng.randint(70, 202), round(rng.uniform(0.0, 4.0), 1)
        points = (age > 55) + (bp > 145) + (chol > 260) + (hr < 130) + (oldpeak > 1.5)
        fields = {
            "age": age,
            "sex": rng.choice(["M", "F"]),
            "chest pain type": rng.choice(["ATA", "NAP", "ASY", "TA"]),
            "resting bp": bp,
            "cholesterol": chol,
            "fasting bs": rng.choice([0, 1]),
            "resting ecg": rng.choice(["Normal", "ST", "LVH"]),
            "max hr": hr,
            "exercise angina": rng.choice(["Y", "N"]),
            "oldpeak": oldpeak,
            "st slope": rng.choice(["Up", "Flat", "Down"]),
        }
        text = ", ".join(f"{k}: {v}" for k, v in fields.items())
        rows.append({"text": text, "label": "disease" if points >= 3 else "healthy", "id": str(i)})
    return rows
