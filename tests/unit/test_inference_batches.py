"""Inference batching: every row once, bounded padded tokens, and predictions back in row order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from tuneproof.tasks._inference import predict_rows
from tuneproof.train.features import inference_batches


@pytest.mark.parametrize(("batch_size", "budget"), [(64, 16_384), (8, 100), (3, 1), (1000, 40)])
def test_batches_cover_every_row_once_within_rows_and_token_budget(batch_size: int, budget: int) -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 60, size=257)
    batches = inference_batches(lengths, batch_size, token_budget=budget)
    seen = np.concatenate(batches)
    assert sorted(seen.tolist()) == list(range(len(lengths)))
    for b in batches:
        assert 1 <= len(b) <= batch_size
        # Over budget only when a single row is longer than the budget on its own.
        assert len(b) * lengths[b].max() <= budget or len(b) == 1
    # Longest first, so each batch pads to its first row.
    firsts = [int(lengths[b].max()) for b in batches]
    assert firsts == sorted(firsts, reverse=True)


def test_batched_predictions_equal_one_row_at_a_time_in_row_order(tiny_bert: Path) -> None:
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=3).eval()
    rng = np.random.default_rng(1)
    vocab = model.config.vocab_size
    sizes = rng.integers(1, 30, 40)
    features = [{"input_ids": [2, *rng.integers(5, vocab, size=n).tolist(), 3]} for n in sizes]

    def softmax(t: torch.Tensor) -> torch.Tensor:
        return torch.softmax(t, -1)

    batched = predict_rows(model, features, 0, 16, "fp32", 3, softmax)
    single = np.vstack([predict_rows(model, [f], 0, 1, "fp32", 3, softmax) for f in features])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert model.training is False  # the caller's mode is kept
