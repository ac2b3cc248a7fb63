"""The per-text quantities every drift test draws from, computed the same way for the reference and
for a production window: token length, unknown-token rate, the model's embedding, and a summary of
its prediction (a category, a confidence, a score).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from tuneproof.train.features import inference_batches, pad_collate

# A summary of one prediction: (category, confidence, score); None where the task has no such thing.
Summary = tuple[str | None, float | None, float | None]


@dataclass
class Observed:
    """One sample of texts (the reference or a window) as the drift tests see it."""

    texts: list[str]
    lengths: np.ndarray  # tokens per text, untruncated, without special tokens
    unk_rate: np.ndarray  # share of a text's tokens that are the tokenizer's unknown token
    category: list[str | None]  # predicted label (or label-set size) per text
    confidence: np.ndarray  # NaN where the task gives none
    score: np.ndarray  # NaN where the task gives none (regression output, entities per text)
    embeddings: np.ndarray | None = None  # [n, d] float32
    probabilities: np.ndarray | None = None  # [n, k] for classification, in the run's label order
    labels: list[str] | None = None  # true labels, when known

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, idx: np.ndarray) -> Observed:
        idx = np.asarray(idx, dtype=np.int64)
        return Observed(
            texts=[self.texts[i] for i in idx],
            lengths=self.lengths[idx],
            unk_rate=self.unk_rate[idx],
            category=[self.category[i] for i in idx],
            confidence=self.confidence[idx],
            score=self.score[idx],
            embeddings=None if self.embeddings is None else self.embeddings[idx],
            probabilities=None if self.probabilities is None else self.probabilities[idx],
            labels=None if self.labels is None else [self.labels[i] for i in idx],
        )


def token_stats(tokenizer: Any, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Token count and unknown-token share per text (untruncated: a longer input is itself a signal)."""
    if not texts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    ids = tokenizer(list(texts), add_special_tokens=False, truncation=False)["input_ids"]
    unk = tokenizer.unk_token_id
    lengths = np.array([len(x) for x in ids], dtype=np.int64)
    if unk is None:  # byte-level tokenizers have no unknown token: the rate is 0 by construction
        return lengths, np.zeros(len(ids), dtype=np.float64)
    counts = np.array([sum(1 for t in x if t == unk) for x in ids], dtype=np.float64)
    return lengths, counts / np.maximum(lengths, 1)


def summarize_prediction(pred: dict[str, Any]) -> Summary:
    """Reduce one of a task's ``format_prediction`` records to what prediction drift compares.

    classification {"label", "probabilities"}: the label and the top probability; multilabel
    {"labels", "probabilities"}: the label-set size and the mean certainty max(p, 1 - p); regression
    {"score"}: the score; token classification {"entities"}: entities per text and their mean score.
    """
    if "label" in pred and isinstance(pred.get("probabilities"), dict):
        probs = [float(v) for v in pred["probabilities"].values()]
        return str(pred["label"]), max(probs) if probs else None, None
    if "labels" in pred and isinstance(pred.get("probabilities"), dict):
        probs = [float(v) for v in pred["probabilities"].values()]
        certainty = float(np.mean([max(p, 1.0 - p) for p in probs])) if probs else None
        return f"{len(pred['labels'])} labels", certainty, None
    if "score" in pred and not isinstance(pred["score"], dict | list):
        return None, None, float(pred["score"])
    if isinstance(pred.get("entities"), list):
        ents = pred["entities"]
        scores = [float(e["score"]) for e in ents if isinstance(e, dict) and "score" in e]
        return None, float(np.mean(scores)) if scores else None, float(len(ents))
    raise ValueError(f"a prediction of an unknown shape (keys {sorted(pred)})")


def summaries(preds: Sequence[dict[str, Any]]) -> tuple[list[str | None], np.ndarray, np.ndarray]:
    cats, conf, score = [], [], []
    for p in preds:
        c, f, s = summarize_prediction(p)
        cats.append(c)
        conf.append(math.nan if f is None else f)
        score.append(math.nan if s is None else s)
    return cats, np.array(conf, dtype=np.float64), np.array(score, dtype=np.float64)


def probabilities_of(preds: Sequence[dict[str, Any]], labels: Sequence[str]) -> np.ndarray | None:
    """``[n, k]`` class probabilities in ``labels`` order, or None unless every record is single-label."""
    if not preds or not all("label" in p and isinstance(p.get("probabilities"), dict) for p in preds):
        return None
    try:
        return np.array([[float(p["probabilities"][lab]) for lab in labels] for p in preds])
    except KeyError:
        return None


def embed(
    model: nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    max_length: int,
    precision: str,
    batch_size: int = 64,
) -> np.ndarray:
    """Mean-pooled last hidden state of the run's own model: ``[n, d]`` float32.

    The fine-tuned encoder rather than a separate sentence model, so drift is measured in the space
    the model decides in, and monitoring needs nothing beyond the run folder.
    """
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)["input_ids"]
    lengths = np.array([len(x) for x in enc])
    collate = pad_collate(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    device = next(model.parameters()).device
    # An encoder-decoder embeds with its encoder; every other model's forward gives the hidden states.
    seq2seq = bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))
    body: nn.Module = model.get_encoder() if seq2seq else model  # type: ignore[operator]
    out: np.ndarray | None = None
    was_training = model.training
    model.eval()
    try:
        with (
            torch.inference_mode(),
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"),
        ):
            for idx in inference_batches(lengths, batch_size):
                b = collate([{"input_ids": enc[i]} for i in idx])
                mask = b["attention_mask"].to(device)
                res = body(
                    input_ids=b["input_ids"].to(device), attention_mask=mask, output_hidden_states=True
                )
                hidden = res.hidden_states[-1].float()
                m = mask.unsqueeze(-1).float()
                pooled = ((hidden * m).sum(1) / m.sum(1).clamp(min=1.0)).cpu().numpy()
                if out is None:
                    out = np.zeros((len(texts), pooled.shape[1]), dtype=np.float32)
                out[idx] = pooled
    finally:
        model.train(was_training)
    assert out is not None
    return out
