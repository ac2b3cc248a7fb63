"""DAPT task: block building, perplexity = exp(mean NLL), general-text checks, lower-is-better gates."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from generative_helpers import chat_tokenizer, write_lines, write_tiny_llama

from tuneproof.errors import DataValidationError, ProtocolError
from tuneproof.evaluate.bootstrap import full_sample
from tuneproof.evaluate.direction import lower_is_better as is_lower_better
from tuneproof.evaluate.generation import interval_group, lm_statistics
from tuneproof.gates.check import check_gates
from tuneproof.protocol.loader import parse_protocol
from tuneproof.protocol.schema import GateSpec
from tuneproof.tasks.base import TaskEnv
from tuneproof.tasks.dapt import block_features, chunk_blocks
from tuneproof.tasks.generation import causal_nll, lm_summary, score_nll
from tuneproof.tasks.registry import get_task
from tuneproof.train.features import pad_collate


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tiny-llama-dapt"))


def _protocol(model: Path, data: Path, extra: str = "") -> Any:
    return parse_protocol(
        f"name: d\ntask: dapt\nmodel: {{source: {model}, max_length: 16}}\ndata: {{files: [{data}]}}\n{extra}"
    )


def test_documents_are_joined_with_eos_and_cut_into_blocks() -> None:
    blocks = chunk_blocks([[1, 2, 3], [4, 5], [6, 7, 8, 9]], block_size=4, eos_id=0)
    assert blocks == [[1, 2, 3, 0], [4, 5, 0, 6], [7, 8, 9, 0]]
    # A last block of one token has nothing to predict and is dropped; a longer one is kept.
    assert chunk_blocks([[1, 2, 3, 4]], block_size=4, eos_id=0) == [[1, 2, 3, 4]]
    assert chunk_blocks([[1, 2, 3, 4, 5]], block_size=4, eos_id=0) == [[1, 2, 3, 4], [5, 0]]
    feats = block_features([[5, 6, 7]], "general-")
    assert feats == [{"row_id": "general-block-0", "input_ids": [5, 6, 7], "labels": [-100, 6, 7]}]


def test_lm_statistics_are_token_weighted_on_a_hand_checked_case() -> None:
    # Two examples: NLL sums 2.0 over 1 token and 4.0 over 3 tokens -> 6 / 4 per token.
    stats = lm_statistics(np.array([2.0, 4.0]), np.array([1, 3]))
    assert stats["loss"](full_sample(2))[0] == pytest.approx(1.5)
    assert stats["perplexity"](full_sample(2))[0] == pytest.approx(math.exp(1.5))
    # A resample holding the first example twice: 4 / 2.
    assert stats["loss"](np.array([[0, 0]]))[0] == pytest.approx(2.0)


def test_uniform_model_has_perplexity_equal_to_the_vocabulary_size(tiny_llama: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # every logit 0: each next token has probability 1 / V
    vocab = model.config.vocab_size
    feats = block_features([[5, 6, 7, 8], [9, 10, 11], [12, 13]], "")
    nll, tokens = score_nll(model, feats, pad_collate(0, label_pad=-100), causal_nll, 2, "fp32")
    assert tokens.tolist() == [3, 2, 1]
    np.testing.assert_allclose(nll, np.array([3, 2, 1]) * math.log(vocab), rtol=1e-5)
    assert lm_summary(nll, tokens)["perplexity"] == pytest.approx(vocab, rel=1e-5)


def test_perplexity_equals_exp_of_mean_token_nll(tiny_llama: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    blocks = [[5, 9, 13, 17, 21, 25], [6, 7, 8], [30, 31, 32, 33, 34]]
    feats = block_features(blocks, "")
    nll, tokens = score_nll(model, feats, pad_collate(0, label_pad=-100), causal_nll, 3, "fp32")
    manual_total, manual_tokens = 0.0, 0
    with torch.no_grad():
        for b in blocks:
            logp = torch.log_softmax(model(torch.tensor([b])).logits[0, :-1].double(), dim=-1)
            manual_total -= float(logp[torch.arange(len(b) - 1), torch.tensor(b[1:])].sum())
            manual_tokens += len(b) - 1
    summary = lm_summary(nll, tokens)
    assert summary["tokens"] == manual_tokens == 5 + 2 + 4
    assert summary["perplexity"] == pytest.approx(math.exp(manual_total / manual_tokens), rel=1e-4)


def test_general_text_is_read_before_training_and_problems_are_listed(
    tmp_path: Path, tiny_llama: Path
) -> None:
    data = write_lines(tmp_path / "domain.txt", ["we propose a new method"] * 3)
    general = write_lines(tmp_path / "general.txt", ["the sky is blue", "", "the grass is green"])
    task: Any = get_task(_protocol(tiny_llama, data, f"dapt: {{general_text: [{general}]}}\n"))
    task.use_base_dir(tmp_path)  # type: ignore[attr-defined]
    assert task.general_texts == ["the sky is blue", "the grass is green"]  # type: ignore[attr-defined]
    assert task.metric_names() == ["loss", "perplexity", "general_loss", "general_perplexity"]
    missing = get_task(_protocol(tiny_llama, data, "dapt: {general_text: [nowhere.txt, general.jsonl]}\n"))
    (tmp_path / "general.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(DataValidationError) as err:
        missing.use_base_dir(tmp_path)  # type: ignore[attr-defined]
    messages = [str(p) for p in err.value.problems]
    assert len(messages) == 2
    assert "dapt.general_text[0]" in messages[0] and "does not exist" in messages[0]
    assert "column 'text' (dapt.general_text_column) not found" in messages[1]


def test_protocol_rules_for_dapt(tmp_path: Path) -> None:
    p = _protocol(tmp_path, tmp_path / "d.txt")
    assert p.data.label_column is None and p.evaluate.baselines == ["base_model"]
    with pytest.raises(ProtocolError, match="label_column to null"):
        parse_protocol(
            f"name: d\ntask: dapt\nmodel: {{source: {tmp_path}}}\n"
            "data: {files: [d.txt], label_column: label}\n"
        )
    with pytest.raises(ProtocolError, match="applies only to task: dapt"):
        parse_protocol(
            f"name: d\ntask: sft\nmodel: {{source: {tmp_path}}}\n"
            "data: {files: [d.jsonl]}\ndapt: {general_text: [g.txt]}\n"
        )
    with pytest.raises(ProtocolError, match="do not apply to dapt"):
        parse_protocol(
            f"name: d\ntask: dapt\nmodel: {{source: {tmp_path}}}\n"
            "data: {files: [d.txt]}\nevaluate: {baselines: [majority]}\n"
        )


def test_perplexity_gates_are_lower_is_better_on_paired_intervals() -> None:
    assert is_lower_better("general_perplexity") and is_lower_better("general_loss")
    rng = np.random.default_rng(0)
    tokens = np.full(200, 50)
    base_nll = rng.normal(3.0, 0.3, 200) * 50
    model_nll = base_nll - 0.2 * 50  # 0.2 nats per token better on every block
    model_block, bases, comps = interval_group(
        200,
        lm_statistics(model_nll, tokens, "general_"),
        {"base_model": lm_statistics(base_nll, tokens, "general_")},
        0.95,
        300,
        0,
    )
    metrics = {"model": model_block, "baselines": bases, "comparisons": comps, "confidence": 0.95}
    diff = comps["base_model"]["general_perplexity"]
    assert diff["high"] < 0  # paired: a constant per-block gain gives a tight interval below zero
    gates = [
        GateSpec(metric="general_perplexity", beats="base_model"),
        GateSpec(metric="general_perplexity", beats="base_model", by=5.0),
        GateSpec(metric="general_perplexity", max=30.0),
    ]
    verdicts = check_gates(gates, metrics).to_json()["verdicts"]
    assert [v["passed"] for v in verdicts] == [
        True,
        False,
        bool(model_block["general_perplexity"]["high"] <= 30),
    ]


def test_dapt_features_score_domain_then_general_blocks(tmp_path: Path, tiny_llama: Path) -> None:
    import pandas as pd

    data = write_lines(tmp_path / "domain.txt", ["x"])
    general = write_lines(tmp_path / "general.txt", ["the sky is blue", "the sun is yellow"])
    tok = chat_tokenizer()
    protocol = _protocol(tiny_llama, data, f"dapt: {{general_text: [{general}], block_size: 8}}\n")
    task: Any = get_task(protocol, TaskEnv(tokenizer=tok, cache_dir=tmp_path))
    task.use_base_dir(tmp_path)
    df = pd.DataFrame(
        {
            "row_id": ["a", "b"],
            "text": ["we propose a new method and results show", "study of cats"],
            "label": [None, None],
        }
    )
    feats = task.features(df, tok, tmp_path)
    # 8 words + EOS + 3 words + EOS = 13 tokens -> blocks of 8 and 5.
    assert [len(f["input_ids"]) for f in feats] == [8, 5]
    from transformers import AutoModelForCausalLM

    out = task.predict(AutoModelForCausalLM.from_pretrained(tiny_llama), feats, 0, 4, "fp32")
    assert list(out["set"]) == ["test", "test", "general", "general"]
    assert out["tokens"].tolist() == [7, 4, 7, 1]
    metrics = task.evaluate(df, out, {"base_model": out}, None)
    assert metrics["comparisons"]["base_model"]["general_perplexity"]["diff"] == 0.0
    assert metrics["language_modeling"]["general_text"]["blocks"] == 2
