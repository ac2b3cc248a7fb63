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


def test_a_batch_is_cut_where_padding_would_pass_the_limit_once_it_has_min_rows() -> None:
    lengths = np.array([10] * 8 + [9] * 4 + [2] * 20)
    batches = inference_batches(lengths, 64, min_efficiency=0.8, min_rows=4)
    sizes = [len(b) for b in batches]
    # 8 x 10 and 4 x 9 pad to 10 at 96.7% real; rows of 2 join while the batch stays >= 80% real:
    # (116 + 2k) / (10 (12 + k)) >= 0.8 holds up to k = 3, so the 4th row of 2 starts a new batch.
    assert sizes[0] == 15 and lengths[batches[0]].tolist() == [10] * 8 + [9] * 4 + [2] * 3
    assert sum(sizes) == len(lengths) and sizes[1:] == [17]
    for b in batches:
        assert len(b) < 4 or lengths[b].sum() >= 0.8 * len(b) * lengths[b].max()
    # Without the rule (efficiency 0) the same rows fill one batch.
    assert [len(b) for b in inference_batches(lengths, 64, min_efficiency=0.0)] == [32]
    # min_rows wins over the efficiency rule: tiny batches make slow GEMMs.
    assert [len(b) for b in inference_batches(np.array([50, 1, 1, 1]), 64, min_rows=4)] == [4]


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
    model.train()  # a model mid-training predicts in eval mode (no dropout) and goes back to training
    np.testing.assert_array_equal(predict_rows(model, features, 0, 16, "fp32", 3, softmax), batched)
    assert model.training is True


def test_bf16_linear_weights_predict_exactly_what_autocast_predicts(tiny_bert: Path) -> None:
    import copy

    from tuneproof.tasks._inference import bf16_linear_weights

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=3).eval()
    cast = bf16_linear_weights(copy.deepcopy(model))
    assert cast.classifier.weight.dtype == torch.bfloat16
    assert cast.bert.embeddings.word_embeddings.weight.dtype == torch.float32  # embeddings and norms stay
    assert cast.bert.embeddings.LayerNorm.weight.dtype == torch.float32
    rng = np.random.default_rng(2)
    vocab = model.config.vocab_size
    features = [{"input_ids": rng.integers(5, vocab, size=n).tolist()} for n in rng.integers(2, 40, 50)]

    def softmax(t: torch.Tensor) -> torch.Tensor:
        return torch.softmax(t, -1)

    autocast = predict_rows(model, features, 0, 16, "bf16", 3, softmax)
    stored = predict_rows(cast, features, 0, 16, "bf16", 3, softmax)
    np.testing.assert_array_equal(stored, autocast)


def test_bf16_linear_weights_leave_a_tied_head_alone() -> None:
    from torch import nn

    from tuneproof.tasks._inference import bf16_linear_weights

    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.proj = nn.Linear(4, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.embed.weight

    m = bf16_linear_weights(Tied())
    assert m.proj.weight.dtype == torch.bfloat16
    assert m.head.weight.dtype == m.embed.weight.dtype == torch.float32
