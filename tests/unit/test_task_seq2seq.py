"""seq2seq task (tiny T5 built in code) and the generation metrics with paired bootstrap intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from generative_helpers import seq2seq_rows, write_jsonl, write_tiny_t5

from tuneproof.evaluate.generation import (
    corpus_score,
    exact_match_scores,
    generation_statistics,
    interval_group,
    normalize_answer,
    rouge_l_scores,
)
from tuneproof.protocol.loader import parse_protocol
from tuneproof.tasks.base import TaskEnv
from tuneproof.tasks.generation import seq2seq_nll, sum_loss
from tuneproof.tasks.registry import get_task
from tuneproof.tasks.seq2seq import seq2seq_collate, text_target


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_t5(tmp_path_factory.mktemp("tiny-t5"))


def _task(model: Path, data: Path, extra: str = "", tokenizer: Any = None) -> Any:
    return get_task(
        parse_protocol(
            f"name: s\ntask: seq2seq\nmodel: {{source: {model}, max_length: 16}}\n"
            f"data: {{files: [{data}], text_column: source, label_column: target}}\n{extra}"
        ),
        TaskEnv(tokenizer=tokenizer),
    )


def _frame(rows: list[dict[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row_id": [f"r{i}" for i in range(len(rows))],
            "text": [r["source"] for r in rows],
            "label": [r["target"] for r in rows],
        }
    )


def test_targets_must_be_non_empty_strings() -> None:
    assert text_target("blue") == ("blue", None)
    assert text_target("  ")[1] == "empty target text"
    assert text_target(None)[1] == "missing target text"
    assert text_target(3)[1] == "target must be a string, got int"


def test_collate_pads_sources_and_targets_separately_with_exact_counts() -> None:
    feats = [{"input_ids": [5, 6, 7], "labels": [9, 3]}, {"input_ids": [5], "labels": [9, 10, 11, 3]}]
    b = seq2seq_collate(0)(feats)
    assert b["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["labels"].tolist() == [[9, 3, -100, -100], [9, 10, 11, 3]]
    assert b["_count"] == 6
    assert (b["_real_tokens"], b["_padded_tokens"]) == (4 + 6, 6 + 8)


def test_features_end_targets_with_eos_and_truncate_at_the_target_length(
    tmp_path: Path, tiny_t5: Path
) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_t5)
    task = _task(tiny_t5, tmp_path / "x.jsonl", "generation: {max_target_length: 3}\n")
    feats = task.features(
        _frame(
            [
                {"source": "sky ok", "target": "blue"},
                {"source": "sky grass sun", "target": "blue green yellow"},
            ]
        ),
        tok,
        tmp_path,
    )
    eos = tok.eos_token_id
    assert feats[0]["labels"] == [tok.convert_tokens_to_ids("blue"), eos]
    assert len(feats[1]["labels"]) == 3 and feats[1]["labels"][-1] == eos
    assert feats[0]["input_ids"][-1] == eos


def test_seq2seq_loss_contract_matches_the_model(tmp_path: Path, tiny_t5: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_t5)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5).eval()
    task = _task(tiny_t5, tmp_path / "x.jsonl")
    feats = task.features(_frame(seq2seq_rows(4)), tok, tmp_path)
    batch = seq2seq_collate(tok.pad_token_id)(feats)
    with torch.no_grad():
        total, count = sum_loss(seq2seq_nll)(model, batch)
        hf = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
        ).loss
    assert count == batch["_count"] == sum(len(f["labels"]) for f in feats)
    assert float(total) / count == pytest.approx(float(hf), rel=1e-5)


def test_predict_generates_in_input_order_and_scores_each_example(tmp_path: Path, tiny_t5: Path) -> None:
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_t5)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5)
    task = _task(tiny_t5, tmp_path / "x.jsonl", "generation: {max_new_tokens: 4, test_examples: 5}\n", tok)
    df = _frame(seq2seq_rows(7))
    feats = task.features(df, tok, tmp_path)
    out = task.predict(model, feats, tok.pad_token_id, 3, "fp32")
    assert [g is not None for g in out["generation"]] == [True] * 5 + [False] * 2
    for i in (0, 4):
        alone = task.predict(model, [feats[i]], tok.pad_token_id, 1, "fp32")
        assert alone["generation"][0] == out["generation"][i]
        assert alone["nll"][0] == pytest.approx(out["nll"][i], rel=1e-5)
    metrics = task.evaluate(df, out, {"base_model": out}, None)
    assert set(metrics["model"]) == {"loss", "perplexity", "exact_match", "rouge_l", "chrf", "bleu"}
    assert metrics["n"] == 7 and metrics["n_generated"] == 5
    assert all(d["diff"] == 0.0 for d in metrics["comparisons"]["base_model"].values())
    frame = task.prediction_frame(df, out)
    assert frame["row_id"].tolist() == df["row_id"].tolist() and frame["rouge_l"].isna().sum() == 2


# -- generation metrics ----------------------------------------------------------------------------
def test_exact_match_normalises_case_punctuation_and_spaces() -> None:
    assert normalize_answer("  The Sky, is BLUE! ") == "the sky is blue"
    assert exact_match_scores(["The sky is blue.", "blue"], ["the sky is  blue", "green"]).tolist() == [
        1.0,
        0.0,
    ]


def test_corpus_scores_equal_sacrebleu_and_rouge_l_is_f1() -> None:
    import sacrebleu

    preds = ["the cat sat on the mat", "a dog barks loudly", "", "green grass grows"]
    refs = ["the cat is on the mat", "the dog barks", "nothing here", "green grass grows"]
    assert corpus_score("bleu", preds, refs) == pytest.approx(
        sacrebleu.corpus_bleu(preds, [refs]).score, abs=1e-9
    )
    assert corpus_score("chrf", preds, refs) == pytest.approx(
        sacrebleu.corpus_chrf(preds, [refs]).score, abs=1e-9
    )
    rl = rouge_l_scores(preds, refs)
    # "the dog barks" vs "a dog barks loudly": LCS 2, P = 2/4, R = 2/3 -> F1 = 4/7.
    assert rl[1] == pytest.approx(4 / 7) and rl[3] == 1.0 and rl[2] == 0.0


def test_paired_generation_intervals_share_resamples() -> None:
    rng = np.random.default_rng(1)
    words = ["blue", "green", "red", "white", "black", "yellow"]
    refs = [" ".join(rng.choice(words, 5)) for _ in range(60)]  # BLEU needs 4-grams
    good = list(refs)
    bad = [" ".join(rng.choice(words, 5)) for _ in range(60)]
    model, bases, comps = interval_group(
        60, generation_statistics(good, refs), {"base_model": generation_statistics(bad, refs)}, 0.95, 300, 0
    )
    assert model["exact_match"] == {"value": 1.0, "low": 1.0, "high": 1.0}
    assert model["chrf"]["value"] == pytest.approx(100.0)
    for metric in ("exact_match", "rouge_l", "chrf", "bleu"):
        diff = comps["base_model"][metric]
        assert diff["low"] > 0, metric  # identical rows on both sides: the gain is established
        assert diff["diff"] == pytest.approx(model[metric]["value"] - bases["base_model"][metric]["value"])
    same = interval_group(
        60, generation_statistics(bad, refs), {"b": generation_statistics(bad, refs)}, 0.95, 300, 0
    )[2]["b"]
    assert all(d["diff"] == d["low"] == d["high"] == 0.0 for d in same.values())


def test_protocol_rules_for_seq2seq(tmp_path: Path) -> None:
    from tuneproof.errors import ProtocolError

    with pytest.raises(ProtocolError, match=r"needs data\.label_column"):
        parse_protocol(
            f"name: s\ntask: seq2seq\nmodel: {{source: {tmp_path}}}\n"
            "data: {files: [d.jsonl], label_column: null}\n"
        )
    with pytest.raises(ProtocolError, match="'head' does not apply"):
        parse_protocol(
            f"name: s\ntask: seq2seq\nmodel: {{source: {tmp_path}}}\n"
            "data: {files: [d.jsonl], label_column: target}\ntrain: {method: head}\n"
        )
    assert write_jsonl  # the helper is shared with the CLI tests
