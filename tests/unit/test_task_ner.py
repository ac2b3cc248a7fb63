"""Token classification: CoNLL and span input, tag schemes, sub-word alignment, strict entity metrics
with sentence-level bootstrap, the most-frequent-tag baseline and the loss contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
from seqeval.scheme import IOB2

from tuneproof.data.conll import normalise_tags, read_conll, spans_to_tags
from tuneproof.data.prepare import prepare_data
from tuneproof.errors import DataValidationError
from tuneproof.evaluate.ner import evaluate_ner
from tuneproof.protocol.loader import parse_protocol
from tuneproof.protocol.schema import EvaluateSpec
from tuneproof.tasks.registry import get_task
from tuneproof.tasks.token_classification import IGNORE, align_labels, most_frequent_tag

STRICT: dict[str, Any] = {"mode": "strict", "scheme": IOB2}


def _protocol(data: str, model: str = "unused", extra: str = "") -> Any:
    return parse_protocol(f"""
name: ner
task: token_classification
model: {{source: {model}, max_length: 32}}
data:
{data}
cleaning: {{near_duplicates: {{enabled: false}}}}
leakage: {{exact: false, near: false}}
# Tiny fixtures on purpose: the split-size minimums are tested in test_cleaning_guards.py.
split: {{train: 0.5, validation: 0.25, test: 0.25, enforce_minimums: false}}
{extra}
""")


# --- reading ----------------------------------------------------------------------------------------


def test_conll_reader_splits_sentences_and_takes_the_last_field_as_tag(tmp_path: Path) -> None:
    path = tmp_path / "x.conll"
    path.write_text("-DOCSTART- -X- O O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\t\nNew York\tB-LOC\n")
    result = read_conll(path, "utf-8")
    assert result.problems == []
    assert [r["tokens"] for r in result.rows] == [["EU", "rejects"], ["New York"]]
    assert [r["tags"] for r in result.rows] == [["B-ORG", "O"], ["B-LOC"]]
    assert [r["_line"] for r in result.rows] == [3, 6]
    assert result.rows[0]["_lines"] == [3, 4]


def test_conll_reader_reports_a_line_without_tag(tmp_path: Path) -> None:
    path = tmp_path / "x.conll"
    path.write_text("a O\nlonely\n\nb O\n")
    result = read_conll(path, "utf-8")
    assert [(p.where, "token and a tag" in p.message) for p in result.problems] == [(f"{path}:2", True)]
    assert [r["tokens"] for r in result.rows] == [["a"], ["b"]]


# --- tag schemes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "scheme", "expected"),
    [
        (["B-PER", "I-PER", "O", "B-LOC"], "auto", ["B-PER", "I-PER", "O", "B-LOC"]),
        (["b-per", "i-per"], "iob2", ["B-per", "I-per"]),  # prefixes are case-insensitive
        (["I-PER", "I-PER", "B-PER", "O", "I-LOC"], "iob1", ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]),
        (["S-PER", "B-LOC", "I-LOC", "E-LOC", "O"], "auto", ["B-PER", "B-LOC", "I-LOC", "I-LOC", "O"]),
        (["U-PER", "B-LOC", "L-LOC"], "bioes", ["B-PER", "B-LOC", "I-LOC"]),  # BILOU
    ],
)
def test_schemes_normalise_to_iob2(tags: list[str], scheme: str, expected: list[str]) -> None:
    assert normalise_tags(tags, scheme) == (expected, [])


@pytest.mark.parametrize(
    ("tags", "scheme", "word", "fragment"),
    [
        (["O", "I-PER"], "iob2", 2, "in IOB2 an entity starts with B-PER"),
        (["B-PER", "I-LOC"], "auto", 2, "follows 'B-PER'"),
        (["B-PER", "O"], "bioes", 2, "before the open PER entity was closed"),
        (["B-PER"], "bioes", 1, "ends inside a PER entity"),
        (["O", "X-PER"], "auto", 2, "unknown prefix"),
        (["O", "banana"], "auto", 2, "not 'O' or PREFIX-TYPE"),
        (["S-PER"], "iob2", 1, "is BIOES"),
    ],
)
def test_bad_tags_name_the_word_and_its_line(tags: list[str], scheme: str, word: int, fragment: str) -> None:
    words = [f"w{i}" for i in range(len(tags))]
    lines = [10 + i for i in range(len(tags))]
    out, problems = normalise_tags(tags, scheme, words, lines)
    assert out == []
    assert len(problems) == 1
    line, message = problems[0]
    assert line == 10 + word - 1
    assert f"word {word} 'w{word - 1}'" in message and fragment in message


def test_spans_become_word_tags_and_must_cover_whole_words() -> None:
    text = "Flights to New York, via Oslo."
    words, tags, problems = spans_to_tags(
        text, [{"start": 11, "end": 19, "label": "LOC"}, {"start": 25, "end": 29, "label": "LOC"}]
    )
    assert problems == []
    assert list(zip(words, tags, strict=True)) == [
        ("Flights", "O"),
        ("to", "O"),
        ("New", "B-LOC"),
        ("York", "I-LOC"),
        (",", "O"),
        ("via", "O"),
        ("Oslo", "B-LOC"),
        (".", "O"),
    ]
    _, _, problems = spans_to_tags(text, [{"start": 11, "end": 17, "label": "LOC"}])
    assert "cuts the word 'York'" in problems[0]
    _, _, problems = spans_to_tags(
        text, [{"start": 11, "end": 19, "label": "LOC"}, {"start": 15, "end": 19, "label": "LOC"}]
    )
    assert "overlaps" in problems[0]
    _, _, problems = spans_to_tags(text, [{"start": 25, "end": 99, "label": "LOC"}])
    assert "outside the text" in problems[0]


# --- the data stage --------------------------------------------------------------------------------


def test_data_stage_reports_a_bad_tag_with_its_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    good = "".join(f"w{i}\tO\nx{i}\tB-PER\n\n" for i in range(6))
    path.write_text(good + "Anna\tB-PER\nis\tO\nhere\tI-PER\n\n")  # the I-PER is on line 21
    protocol = _protocol(f"  files: [{path}]\n  format: conll\n  text_column: tokens\n  label_column: tags")
    task: Any = get_task(protocol)
    with pytest.raises(DataValidationError) as err:
        prepare_data(protocol, tmp_path, target_check=task.target_check(), stratify=task.stratify)
    [problem] = err.value.problems
    assert problem.where == f"{path}:21"
    assert "'here'" in problem.message and "I-PER" in problem.message


def test_data_stage_reads_tokens_jsonl_and_span_jsonl(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.jsonl"
    tokens.write_text(
        "".join(json.dumps({"tokens": ["Ann", f"w{i}"], "tags": ["S-PER", "O"]}) + "\n" for i in range(8))
    )
    protocol = _protocol(f"  files: [{tokens}]\n  text_column: tokens\n  label_column: tags")
    task: Any = get_task(protocol)
    prepared = prepare_data(protocol, tmp_path, target_check=task.target_check(), stratify=task.stratify)
    rows = prepared.splits["train"]
    assert all(
        t.split(" ")[0] == "Ann" and list(tags) == ["B-PER", "O"]
        for t, tags in zip(rows["text"], rows["label"], strict=True)
    )
    spans = tmp_path / "spans.jsonl"
    spans.write_text(
        "".join(
            json.dumps(
                {
                    "text": f"Met Ann Lee in Oslo {i}",
                    "spans": [
                        {"start": 4, "end": 11, "label": "PER"},
                        {"start": 15, "end": 19, "label": "LOC"},
                    ],
                }
            )
            + "\n"
            for i in range(8)
        )
    )
    protocol = _protocol(f"  files: [{spans}]\n  text_column: text\n  label_column: spans")
    prepared = prepare_data(
        protocol, tmp_path, target_check=get_task(protocol).target_check(), stratify=False
    )
    row = prepared.splits["test"].iloc[0]
    assert row["text"].split(" ")[:5] == ["Met", "Ann", "Lee", "in", "Oslo"]
    assert list(row["label"])[:5] == ["O", "B-PER", "I-PER", "O", "B-LOC"]


def test_protocol_defaults_and_checks_for_token_classification() -> None:
    protocol = _protocol("  files: [x.conll]", extra="train: {early_stopping: {patience: 1}}")
    assert protocol.evaluate.baselines == ["most_frequent_tag"]
    assert protocol.train.early_stopping is not None and protocol.train.early_stopping.metric == "f1"
    with pytest.raises(Exception, match="do not apply to token_classification"):
        _protocol("  files: [x.conll]", extra="evaluate: {baselines: [tfidf_logreg]}")
    with pytest.raises(Exception, match="label_separator applies only"):
        _protocol("  files: [x.conll]\n  label_separator: ';'")


# --- sub-word alignment ----------------------------------------------------------------------------


def _wordpiece_tokenizer(tmp_path: Path) -> Any:
    from transformers import BertTokenizerFast  # type: ignore[attr-defined]

    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        "new",
        "york",
        "is",
        "big",
        "good",
        "##ness",
        "##s",
    ]
    return BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)


def test_only_the_first_sub_token_of_a_word_carries_its_tag(tmp_path: Path) -> None:
    tok = _wordpiece_tokenizer(tmp_path)
    enc = tok([["goodness", "is", "big", "goods"]], is_split_into_words=True)
    assert tok.convert_ids_to_tokens(enc["input_ids"][0]) == [
        "[CLS]",
        "good",
        "##ness",
        "is",
        "big",
        "good",
        "##s",
        "[SEP]",
    ]
    labels, first = align_labels(enc.word_ids(0), [3, 0, 0, 1])
    assert labels == [IGNORE, 3, IGNORE, 0, 0, 1, IGNORE, IGNORE]
    assert first == [1, 3, 4, 5]


def test_task_features_align_tags_and_mark_truncated_words(tmp_path: Path) -> None:
    import pandas as pd

    tok = _wordpiece_tokenizer(tmp_path)
    protocol = _protocol("  files: [x.conll]", extra="")
    task: Any = get_task(protocol)
    task.labels = ["O", "B-LOC", "I-LOC", "B-X", "I-X"]
    df = pd.DataFrame(
        {
            "row_id": ["a", "b"],
            "text": ["new york is big", "goodness " * 20 + "big"],
            "label": [["B-LOC", "I-LOC", "O", "O"], ["B-X"] + ["O"] * 20],
        }
    )
    feats = task.features(df, tok, tmp_path / "cache")
    assert feats[0]["labels"] == [IGNORE, 1, 2, 0, 0, IGNORE]
    assert feats[0]["first"] == [1, 2, 3, 4]
    # max_length 32 leaves room for 15 two-piece words: the rest have no position and no label.
    assert feats[1]["first"][:2] == [1, 3] and feats[1]["first"][-1] == -1
    assert sum(1 for x in feats[1]["labels"] if x != IGNORE) == sum(1 for x in feats[1]["first"] if x >= 0)


# --- metrics ---------------------------------------------------------------------------------------

GOLD = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "O"], ["B-LOC", "O"]]
PRED = [["B-PER", "I-PER", "O", "O"], ["O", "B-ORG", "I-ORG"], ["B-LOC", "O"]]
# Gold entities: PER(0-2), LOC(3), ORG(1), LOC(0) = 4. Predicted: PER(0-2), ORG(1-3), LOC(0) = 3.
# Strict matches: PER and LOC(0) -> tp 2; P = 2/3, R = 2/4, F1 = 4/7.


def test_entity_metrics_match_seqeval_strict_by_hand() -> None:
    m = evaluate_ner(GOLD, PRED, {"same": GOLD}, EvaluateSpec(bootstrap_samples=200), seed=1)
    model = m["model"]
    assert model["precision"]["value"] == pytest.approx(2 / 3)
    assert model["recall"]["value"] == pytest.approx(2 / 4)
    assert model["f1"]["value"] == pytest.approx(4 / 7)
    assert model["f1"]["value"] == pytest.approx(f1_score(GOLD, PRED, **STRICT))
    assert model["precision"]["value"] == pytest.approx(precision_score(GOLD, PRED, **STRICT))
    assert model["recall"]["value"] == pytest.approx(recall_score(GOLD, PRED, **STRICT))
    report = classification_report(GOLD, PRED, output_dict=True, zero_division=0, **STRICT)
    for kind in ("PER", "LOC", "ORG"):
        assert model["per_entity"][kind]["f1"]["value"] == pytest.approx(report[kind]["f1-score"])
        assert model["per_entity"][kind]["support"] == report[kind]["support"]
    assert model["macro_f1"]["value"] == pytest.approx(report["macro avg"]["f1-score"])
    # A baseline identical to the gold scores 1; the paired difference is exactly -(1 - 4/7) every time.
    assert m["baselines"]["same"]["f1"] == {"value": 1.0, "low": 1.0, "high": 1.0}
    assert m["comparisons"]["same"]["f1"]["diff"] == pytest.approx(4 / 7 - 1)
    assert m["n"] == 3 and m["unit"] == "sentence" and m["n_words"] == 9


def test_bootstrap_resamples_sentences_and_matches_seqeval_on_random_data() -> None:
    rng = np.random.default_rng(0)
    tags = ["O", "B-A", "I-A", "B-B", "I-B"]
    gold = [normalise_tags(list(rng.choice(tags, size=rng.integers(1, 9))), "iob1")[0] for _ in range(150)]
    pred = [[t if rng.random() < 0.8 else str(rng.choice(tags)) for t in g] for g in gold]
    spec = EvaluateSpec(bootstrap_samples=300)
    m = evaluate_ner(gold, pred, {}, spec, seed=3)
    f1 = m["model"]["f1"]
    assert f1["value"] == pytest.approx(f1_score(gold, pred, **STRICT), abs=1e-12)
    assert f1["low"] < f1["value"] < f1["high"]
    # Replicates are seqeval on resampled sentences: check a few resamples by hand.
    from tuneproof.evaluate.bootstrap import bootstrap_indices
    from tuneproof.evaluate.ner import SentenceCounts, _sum_stat, entities

    idx = bootstrap_indices(len(gold), 3, seed=9)
    stat = _sum_stat(SentenceCounts(entities(gold), entities(pred), ["A", "B"]), None, "f1")
    for row, value in zip(idx, stat(idx), strict=True):
        assert value == pytest.approx(f1_score([gold[i] for i in row], [pred[i] for i in row], **STRICT))
    assert m == evaluate_ner(gold, pred, {}, spec, seed=3)  # fixed seed, same intervals


def test_misaligned_predictions_are_refused() -> None:
    with pytest.raises(ValueError, match="one tag per gold tag"):
        evaluate_ner(GOLD, [p[:-1] for p in PRED], {}, EvaluateSpec(bootstrap_samples=100), seed=0)


def test_most_frequent_tag_baseline_by_hand() -> None:
    train_words = [["Paris", "is", "nice"], ["paris", "Hilton"], ["PARIS", "rocks"]]
    train_tags = [["B-LOC", "O", "O"], ["B-PER", "I-PER"], ["B-LOC", "O"]]
    out = most_frequent_tag(train_words, train_tags, [["paris", "hilton", "unknown", "Is"]])
    assert out == [["B-LOC", "I-PER", "O", "O"]]


# --- loss and prediction ---------------------------------------------------------------------------


class _FixedLogits(torch.nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.logits = logits

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        class Out:
            logits = self.logits[: input_ids.shape[0], : input_ids.shape[1]] + self.w

        return Out()


def test_loss_sums_over_labelled_tokens_and_counts_them() -> None:
    task: Any = get_task(_protocol("  files: [x.conll]"))
    task.labels = ["O", "B-X", "I-X"]
    logits = torch.zeros(2, 4, 3)
    batch = {
        "input_ids": torch.ones(2, 4, dtype=torch.long),
        "attention_mask": torch.ones(2, 4),
        "labels": torch.tensor([[IGNORE, 0, 1, IGNORE], [IGNORE, 2, IGNORE, IGNORE]]),
    }
    total, count = task.loss_fn([])(_FixedLogits(logits), batch)
    assert count == 3
    assert float(total.detach()) == pytest.approx(3 * np.log(3))  # uniform logits: log(3) per labelled token


def test_prediction_reads_each_words_first_sub_token_and_defaults_to_outside() -> None:
    task: Any = get_task(_protocol("  files: [x.conll]"))
    task.labels = ["O", "B-X", "I-X"]
    logits = torch.full((1, 5, 3), -5.0)
    logits[0, 1, 1] = 5.0  # word 0 -> B-X at position 1
    logits[0, 2, 0] = 5.0  # position 2 is word 0's second piece: must be ignored
    logits[0, 2, 2] = 9.0
    logits[0, 3, 2] = 5.0  # word 1 -> I-X
    feats = [{"input_ids": [2, 5, 6, 7, 3], "first": [1, 3, -1], "row_id": "r"}]
    out = task.predict(_FixedLogits(logits), feats, pad_id=0, batch_size=4, precision="fp32")
    assert task.tags_of(out) == [["B-X", "I-X", "O"]]
    assert out[0].unscored == 1
