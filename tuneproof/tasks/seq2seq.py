"""Encoder-decoder fine-tuning (T5, BART...) for summarisation or translation.

Source text in ``data.text_column``, target text in ``data.label_column``. Sources are truncated at
``model.max_length`` tokens, targets at ``generation.max_target_length``. Evaluation: held-out
loss/perplexity on the target tokens, and greedy generations scored with ROUGE-L, BLEU, chrF and
exact match, each against the base model with paired bootstrap intervals.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from tuneproof.data.prepare import TargetCheck, split_hash
from tuneproof.tasks.generation import (
    GenerativeTask,
    generation_frame,
    generative_metrics,
    generative_spec,
    new_outputs,
    samples,
    seq2seq_nll,
)
from tuneproof.train.features import cached_features, tokenizer_fingerprint

IGNORE = -100


def text_target(value: Any) -> tuple[Any, str | None]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, "missing target text"
    if not isinstance(value, str):
        return None, f"target must be a string, got {type(value).__name__}"
    if not value.strip():
        return None, "empty target text"
    return value, None


def seq2seq_collate(pad_id: int) -> Any:
    """Sources padded with the pad token, targets with -100, each to its own longest length."""

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        src = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), src), pad_id, dtype=torch.long)
        mask = torch.zeros((len(features), src), dtype=torch.long)
        for i, f in enumerate(features):
            ids[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[i, : len(f["input_ids"])] = 1
        batch: dict[str, Any] = {
            "input_ids": ids,
            "attention_mask": mask,
            "row_ids": [f.get("row_id") for f in features],
        }
        real, padded = int(mask.sum()), mask.numel()
        if "labels" in features[0]:
            tgt = max(len(f["labels"]) for f in features)
            labels = torch.full((len(features), tgt), IGNORE, dtype=torch.long)
            for i, f in enumerate(features):
                labels[i, : len(f["labels"])] = torch.tensor(f["labels"])
            batch["labels"] = labels
            batch["_count"] = int((labels != IGNORE).sum())
            real, padded = real + batch["_count"], padded + labels.numel()
        else:
            batch["_count"] = len(features)
        batch["_real_tokens"], batch["_padded_tokens"] = real, padded
        return batch

    return collate


SPEC = generative_spec(
    "seq2seq",
    "rewrites an input text into an output text",
    options=("data.labels", "data.label_column"),
    report_sections=("generation_samples", "validation_vs_base"),
    pipeline_tag="text2text-generation",
)


class Seq2SeqTask(GenerativeTask):
    spec = SPEC
    peft_type = "SEQ_2_SEQ_LM"

    def target_check(self) -> TargetCheck:
        return text_target

    def auto_class(self) -> Any:
        from transformers import AutoModelForSeq2SeqLM

        return AutoModelForSeq2SeqLM

    def nll(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return seq2seq_nll(model, batch)

    def collate(self, pad_id: int) -> Any:
        return seq2seq_collate(pad_id)

    def features(self, df: pd.DataFrame, tokenizer: Any, cache_dir: Path | None) -> list[dict[str, Any]]:
        src_len, tgt_len = self.protocol.model.max_length, self.protocol.generation.max_target_length
        eos = tokenizer.eos_token_id

        def encode(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            src = tokenizer(batch["text"], truncation=True, max_length=src_len)["input_ids"]
            tgt = tokenizer(text_target=batch["label"], truncation=True, max_length=tgt_len)["input_ids"]
            # The model must learn to stop: targets end with EOS even when the tokenizer adds none.
            tgt = [t if eos is None or (t and t[-1] == eos) else [*t[: tgt_len - 1], eos] for t in tgt]
            return {"input_ids": src, "labels": tgt, "prompt_ids": src}

        key = ["seq2seq", tokenizer_fingerprint(tokenizer), str(src_len), str(tgt_len), split_hash(df)]
        return cached_features(
            {"row_id": df["row_id"].tolist(), "text": df["text"].tolist(), "label": df["label"].tolist()},
            encode,
            key,
            cache_dir,
        )

    def features_for_inference(self, df: pd.DataFrame, tokenizer: Any) -> list[dict[str, Any]]:
        enc = tokenizer(df["text"].tolist(), truncation=True, max_length=self.protocol.model.max_length)
        return [
            {"row_id": rid, "input_ids": ids, "prompt_ids": ids}
            for rid, ids in zip(df["row_id"], enc["input_ids"], strict=True)
        ]

    def predict(
        self, model: nn.Module, features: list[dict[str, Any]], pad_id: int, batch_size: int, precision: str
    ) -> np.ndarray:
        out = new_outputs(len(features))
        evaluating = bool(features) and "labels" in features[0]
        if evaluating:
            out["nll"], out["tokens"] = self.score(model, features, pad_id, batch_size, precision)
        self.generate_into(out, model, features, precision, evaluating, decoder_only=False)
        return out

    def evaluate(
        self,
        test: pd.DataFrame,
        outputs: np.ndarray,
        baselines: dict[str, np.ndarray],
        validation: dict[str, Any] | None,
    ) -> dict[str, Any]:
        refs = [str(x) for x in test["label"]]
        metrics = generative_metrics(self.protocol, outputs, baselines, refs)
        metrics["validation"] = validation
        metrics["samples"] = samples(
            outputs,
            baselines,
            [str(x) for x in test["text"]],
            refs,
            test["row_id"].tolist(),
            self.protocol.generation.samples_in_report,
        )
        return metrics

    def prediction_frame(self, df: pd.DataFrame, outputs: np.ndarray) -> pd.DataFrame:
        return generation_frame(df, outputs, [str(x) for x in df["label"]])

    def format_prediction(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        return [{"generation": g} for g in outputs["generation"]]


__all__ = ["Seq2SeqTask", "seq2seq_collate", "text_target"]
