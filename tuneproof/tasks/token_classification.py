"""Token classification (named entities, span tagging) as a task module.

A row is a sentence: ``text`` holds its words joined by single spaces and ``label`` one IOB2 tag per
word. Words reach the model pre-split (``is_split_into_words``); each word's first sub-token carries
its tag and the others are ignored by the loss (-100), and the prediction for a word is read at its
first sub-token. Scores are strict entity-level (see ``tuneproof.evaluate.ner``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from tuneproof.data.clean import normalize_text
from tuneproof.data.conll import LineProblem, entity_types, normalise_tags, spans_to_tags, word_spans
from tuneproof.data.prepare import PreparedData, split_hash
from tuneproof.errors import DataValidationError, Problem
from tuneproof.evaluate.intervals import slice_masks
from tuneproof.evaluate.ner import entities, evaluate_ner, ner_metric_names
from tuneproof.protocol.schema import Protocol
from tuneproof.tasks._inference import logits_batches
from tuneproof.tasks.base import Baselines, TaskEnv
from tuneproof.tasks.encoder import EncoderTask
from tuneproof.tasks.spec import TaskSpec
from tuneproof.train.features import cached_features, tokenizer_fingerprint
from tuneproof.train.loop import LossFn
from tuneproof.train.model_source import ModelRef

IGNORE = -100  # the label id cross-entropy skips: special tokens, later sub-tokens, padding


@dataclass
class TaggedSentence:
    """Per-word tag probabilities ``[words, tags]``; words and character offsets at inference."""

    probs: np.ndarray
    words: list[str] | None = None
    offsets: list[tuple[int, int]] | None = None
    unscored: int = 0  # words with no sub-token inside the model's window (truncated)


class _TagCheck:
    """The data stage's check for tagged sentences: words and tags are validated together."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.types = protocol.data.labels

    def __call__(self, value: Any) -> tuple[Any, str | None]:
        # Only reached without check_row support; tags alone cannot be checked against the words.
        return None, "token_classification needs the row-level check (check_row)"

    def check_row(self, raw: dict[str, Any]) -> tuple[str | None, Any, list[LineProblem]]:
        data = self.protocol.data
        if data.label_column is None:
            return None, None, [(None, "token_classification needs data.label_column (tags or spans)")]
        text, label = raw.get(data.text_column), raw.get(data.label_column)
        lines = raw.get("_lines")
        if isinstance(text, str) and isinstance(label, list) and all(isinstance(s, dict) for s in label):
            words, tags, errors = spans_to_tags(text, label, self.types)  # {"text", "spans": [...]}
            if errors:
                return None, None, [(None, e) for e in errors]
        elif isinstance(text, list | str) and isinstance(label, list | str):
            words = text.split() if isinstance(text, str) else text
            tags = label.split() if isinstance(label, str) else label
        else:
            return (
                None,
                None,
                [
                    (
                        None,
                        f"expected words ({data.text_column!r}: a list, or a string) and tags "
                        f"({data.label_column!r}: a list of tags or of spans), got "
                        f"{type(text).__name__} and {type(label).__name__}",
                    )
                ],
            )
        if not words:
            return None, None, [(None, "the sentence has no words")]
        if len(words) != len(tags):
            return None, None, [(None, f"{len(words)} words but {len(tags)} tags")]
        clean: list[str] = []
        for i, w in enumerate(words):
            if not isinstance(w, str):
                return None, None, [(None, f"word {i + 1} must be a string, got {type(w).__name__}")]
            # Normalised here, word by word, so the data stage's normalisation of the joined text cannot
            # merge or split words; whitespace that normalisation creates inside a word is dropped.
            w = "".join(normalize_text(w, self.protocol.cleaning).split())
            if not w:
                line = lines[i] if isinstance(lines, list) and i < len(lines) else None
                return None, None, [(line, f"word {i + 1} is empty or only whitespace")]
            clean.append(w)
        iob2, problems = normalise_tags(
            tags, data.tag_scheme, clean, lines if isinstance(lines, list) else None, self.types
        )
        if problems:
            return None, None, problems
        return " ".join(clean), iob2, []


SPEC = TaskSpec(
    name="token_classification",
    purpose="labels spans of tokens in each text (e.g. named entities)",
    baselines=("most_frequent_tag",),
    default_baselines=("most_frequent_tag",),
    selection_metrics=("f1", "precision", "recall", "loss"),
    stratify=False,
    options=("data.labels", "data.label_column", "data.tag_scheme", "train.label_smoothing"),
    report_sections=("per_entity",),
    pipeline_tag="token-classification",
)


class TokenClassificationTask(EncoderTask):
    spec = SPEC
    peft_type = "TOKEN_CLS"
    label_pad = IGNORE

    def __init__(self, protocol: Protocol, env: TaskEnv | None = None) -> None:
        super().__init__(protocol, env)
        self.labels = _tag_set(protocol.data.labels or [])

    # -- data ------------------------------------------------------------------------------------
    def target_check(self) -> _TagCheck:
        return _TagCheck(self.protocol)

    def set_labels(self, prepared: PreparedData) -> None:
        if not self.protocol.data.labels:
            types = set().union(*(entity_types(t) for t in prepared.splits["train"]["label"]))
            self.labels = _tag_set(sorted(types))

    def _words(self, df: pd.DataFrame) -> list[list[str]]:
        words = [t.split(" ") for t in df["text"]]
        bad = [
            rid for rid, w, tags in zip(df["row_id"], words, df["label"], strict=True) if len(w) != len(tags)
        ]
        if bad:
            # Only a text rewrite after the data check (e.g. PII masking) can get here.
            raise DataValidationError(
                [Problem(rid, "the words no longer match the tags after cleaning") for rid in bad[:20]],
                "token_classification",
            )
        return words

    def features(self, df: pd.DataFrame, tokenizer: Any, cache_dir: Path | None) -> list[dict[str, Any]]:
        tag2id = {t: i for i, t in enumerate(self.labels)}
        max_length = self.protocol.model.max_length

        def encode(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            enc = tokenizer(batch["words"], is_split_into_words=True, truncation=True, max_length=max_length)
            out: dict[str, list[Any]] = {
                "input_ids": enc["input_ids"],
                "labels": [],
                "first": [],
                "word_labels": [],
                "length": [],
            }
            for i, tags in enumerate(batch["tags"]):
                word_labels = [tag2id.get(t, IGNORE) for t in tags]
                labels, first = align_labels(enc.word_ids(i), word_labels)
                out["labels"].append(labels)
                out["first"].append(first)
                out["word_labels"].append(word_labels)
                out["length"].append(len(enc["input_ids"][i]))
            return out

        key = [
            "token_classification",
            tokenizer_fingerprint(tokenizer),
            str(max_length),
            ",".join(self.labels),
            split_hash(df),
        ]
        return cached_features(
            {
                "row_id": df["row_id"].tolist(),
                "words": self._words(df),
                "tags": [list(t) for t in df["label"]],
            },
            encode,
            key,
            cache_dir,
        )

    def features_for_inference(self, df: pd.DataFrame, tokenizer: Any) -> list[dict[str, Any]]:
        feats = []
        for rid, text in zip(df["row_id"], df["text"], strict=True):
            offsets = word_spans(text) or [(0, 0)]
            words = [text[a:b] for a, b in offsets]
            enc = tokenizer(
                [words], is_split_into_words=True, truncation=True, max_length=self.protocol.model.max_length
            )
            _, first = align_labels(enc.word_ids(0), [0] * len(words))
            feats.append(
                {
                    "input_ids": enc["input_ids"][0],
                    "first": first,
                    "row_id": rid,
                    "words": words,
                    "offsets": offsets,
                }
            )
        return feats

    # -- model -----------------------------------------------------------------------------------
    def auto_class(self) -> Any:
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    def build_model(self, ref: ModelRef) -> nn.Module:
        return self.load_head_model(
            ref,
            num_labels=len(self.labels),
            id2label=dict(enumerate(self.labels)),
            label2id={t: i for i, t in enumerate(self.labels)},
        )

    def metric_names(self) -> list[str]:
        return ner_metric_names(self.protocol.data.labels)

    def loss_fn(self, train_features: list[dict[str, Any]]) -> LossFn:
        ce = nn.CrossEntropyLoss(
            ignore_index=IGNORE, reduction="sum", label_smoothing=self.protocol.train.label_smoothing
        )

        def loss(model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"]
            # Summed over labelled positions only: the count is what the loop divides by.
            return ce(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1)), int(
                (labels != IGNORE).sum()
            )

        return loss

    # -- inference and evaluation ----------------------------------------------------------------
    def predict(
        self, model: nn.Module, features: list[dict[str, Any]], pad_id: int, batch_size: int, precision: str
    ) -> np.ndarray:
        """One :class:`TaggedSentence` per feature, in feature order.

        A word with no sub-token inside the model's window (truncated, or dropped by the tokenizer)
        gets probability 1 for "O": it is scored as predicted outside any entity.
        """
        out = np.empty(len(features), dtype=object)
        for idx, logits, _ in logits_batches(model, features, pad_id, batch_size, precision):
            probs = torch.softmax(logits, dim=-1).numpy()
            for row, i in enumerate(idx):
                out[i] = self.tagged_sentence(features[i], probs[row])
        return out

    def tagged_sentence(self, feature: dict[str, Any], token_probs: np.ndarray) -> TaggedSentence:
        """A sentence's per-word tag probabilities from its per-token ones ``[tokens, tags]`` (also
        what an exported graph's outputs are read with)."""
        first = np.asarray(feature["first"], dtype=np.int64)
        p = np.zeros((first.size, len(self.labels)), dtype=np.float32)
        p[:, self.labels.index("O")] = 1.0
        ok = first >= 0
        p[ok] = token_probs[first[ok]]
        return TaggedSentence(p, feature.get("words"), feature.get("offsets"), int((~ok).sum()))

    def tags_of(self, outputs: np.ndarray) -> list[list[str]]:
        return [[self.labels[j] for j in s.probs.argmax(axis=1)] for s in outputs]

    def validation_metrics(
        self, model: nn.Module, features: list[dict[str, Any]], pad_id: int, batch_size: int, precision: str
    ) -> dict[str, float]:
        from seqeval.metrics import f1_score, precision_score, recall_score
        from seqeval.scheme import IOB2

        outputs = self.predict(model, features, pad_id, batch_size, precision)
        gold = [[self.labels[j] if j != IGNORE else "O" for j in f["word_labels"]] for f in features]
        pred = self.tags_of(outputs)
        nll = [
            -np.log(max(float(s.probs[w, j]), 1e-12))
            for s, f in zip(outputs, features, strict=True)
            for w, j in enumerate(f["word_labels"])
            if j != IGNORE and f["first"][w] >= 0
        ]
        kw: dict[str, Any] = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
        return {
            "loss": float(np.mean(nll)) if nll else 0.0,
            "f1": float(f1_score(gold, pred, **kw)),
            "precision": float(precision_score(gold, pred, **kw)),
            "recall": float(recall_score(gold, pred, **kw)),
        }

    def baselines(
        self, prepared: PreparedData, test: pd.DataFrame, device: torch.device | None = None
    ) -> Baselines:
        out: dict[str, np.ndarray] = {}
        for name in self.protocol.evaluate.baselines:
            if name == "most_frequent_tag":
                train = prepared.splits["train"]
                out[name] = _as_objects(
                    most_frequent_tag(self._words(train), list(train["label"]), self._words(test))
                )
        return Baselines(out)

    def evaluate(
        self,
        test: pd.DataFrame,
        outputs: np.ndarray,
        baselines: dict[str, np.ndarray],
        validation: dict[str, Any] | None,
    ) -> dict[str, Any]:
        gold = [list(t) for t in test["label"]]
        slices = slice_masks(
            self.protocol.evaluate, list(test["text"]), {c: test[c].tolist() for c in test.columns}
        )
        unseen = sorted(
            set().union(*(entity_types(g) for g in gold)) - {t[2:] for t in self.labels if t != "O"}
        )
        extra = {
            "tag_set": self.labels,
            "truncated_words": int(sum(s.unscored for s in outputs)),
            "types_unseen_in_training": unseen,
        }
        return evaluate_ner(
            gold,
            self.tags_of(outputs),
            {k: list(v) for k, v in baselines.items()},
            self.protocol.evaluate,
            self.protocol.seed,
            slices or None,
            validation,
            extra,
        )

    def prediction_frame(self, df: pd.DataFrame, outputs: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "row_id": df["row_id"].to_numpy(),
                "text": df["text"].to_numpy(),
                "label": [list(t) for t in df["label"]],
                "pred": self.tags_of(outputs),
            }
        )

    def format_prediction(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        results = []
        for s, tags in zip(outputs, self.tags_of(outputs), strict=True):
            words = s.words or [str(i) for i in range(len(tags))]
            ents = []
            for start, end, kind in sorted(entities([tags])[0]):
                score = s.probs[np.arange(start, end), _ids(self.labels, tags[start:end])].mean()
                item: dict[str, Any] = {
                    "type": kind,
                    "words": [start, end],
                    "text": " ".join(words[start:end]),
                    "score": round(float(score), 6),
                }
                if s.offsets is not None:
                    item["start"], item["end"] = s.offsets[start][0], s.offsets[end - 1][1]
                ents.append(item)
            results.append({"words": words, "tags": tags, "entities": ents})
        return results


def align_labels(word_ids: list[int | None], word_labels: list[int]) -> tuple[list[int], list[int]]:
    """Sub-token labels (a word's tag on its first sub-token, -100 elsewhere) and each word's first
    sub-token position (-1 when the word has none inside the window)."""
    labels = [IGNORE] * len(word_ids)
    first = [-1] * len(word_labels)
    prev: int | None = None
    for pos, w in enumerate(word_ids):
        if w is not None and w != prev:
            labels[pos] = word_labels[w]
            first[w] = pos
        prev = w
    return labels, first


def most_frequent_tag(
    train_words: list[list[str]], train_tags: list[list[str]], test_words: list[list[str]]
) -> list[list[str]]:
    """Each test word gets the tag its lower-cased form carried most often in training ("O" if unseen).

    Ties go to the tag seen first, so the baseline does not depend on dictionary order.
    """
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for words, tags in zip(train_words, train_tags, strict=True):
        for w, t in zip(words, tags, strict=True):
            counts[w.lower()][t] += 1
    best = {w: c.most_common(1)[0][0] for w, c in counts.items()}
    return [[best.get(w.lower(), "O") for w in words] for words in test_words]


def _tag_set(types: list[str]) -> list[str]:
    return ["O", *[f"{p}-{t}" for t in types for p in ("B", "I")]]


def _ids(labels: list[str], tags: list[str]) -> list[int]:
    return [labels.index(t) for t in tags]


def _as_objects(rows: list[list[str]]) -> np.ndarray:
    out = np.empty(len(rows), dtype=object)
    for i, r in enumerate(rows):
        out[i] = r
    return out
