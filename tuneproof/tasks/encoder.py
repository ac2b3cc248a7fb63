"""What the four encoder tasks (classification, regression, multi-label, token classification) share:
feature caching, padding, model loading and inference features, written once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
from torch import nn

from tuneproof.data.prepare import split_hash
from tuneproof.evaluate.intervals import slice_masks
from tuneproof.tasks.base import Features, Task
from tuneproof.train.features import cached_features, pad_collate, tokenizer_fingerprint
from tuneproof.train.model_source import ModelRef, load_pretrained


class EncoderTask(Task):
    """A task whose model is an encoder (or decoder) with a head over its token states."""

    predicts_under_autocast = True  # predict runs every forward through logits_batches
    peft_type: ClassVar[str] = "SEQ_CLS"
    label_pad: ClassVar[int | None] = None  # padding value of per-token labels, where there are any

    def auto_class(self) -> Any:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def load_head_model(self, ref: ModelRef, **config: Any) -> nn.Module:
        """The pretrained body with a new head; ``config`` sets the head (num_labels, id2label, ...)."""
        model = load_pretrained(self.auto_class(), ref, **config)
        # Decoder-only bodies (Llama) have no pad token; batched inference needs one to find each
        # row's last real token.
        if model.config.pad_token_id is None and model.config.eos_token_id is not None:
            model.config.pad_token_id = model.config.eos_token_id
        head_model: nn.Module = model
        return head_model

    def load_packaged(self, model_dir: Path) -> nn.Module:
        from tuneproof.train.sentence_model import is_sentence_classifier, load_sentence_classifier

        if is_sentence_classifier(model_dir):  # a train.method: setfit run
            return load_sentence_classifier(model_dir)
        model: nn.Module = self.auto_class().from_pretrained(model_dir, use_safetensors=True)
        return model

    def peft_task_type(self) -> str:
        return self.peft_type

    def collate(self, pad_id: int) -> Callable[[Features], dict[str, Any]]:
        return pad_collate(pad_id, label_pad=self.label_pad)

    def text_features(
        self,
        df: pd.DataFrame,
        tokenizer: Any,
        cache_dir: Path | None,
        targets: tuple[str, list[Any]],
        to_labels: Callable[[list[Any]], list[Any]],
        key: str,
    ) -> Features:
        """Tokenised texts with their training labels, cached by the content of the split.

        ``targets`` is the column the labels are made from and its values; ``key`` names what else the
        labels depend on (the label order, the target scale), so a change there is never a stale hit.
        """
        max_length = self.protocol.model.max_length
        column, values = targets

        def encode(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            enc = tokenizer(batch["text"], truncation=True, max_length=max_length)
            return {
                "input_ids": enc["input_ids"],
                "labels": to_labels(batch[column]),
                "length": [len(x) for x in enc["input_ids"]],
            }

        return cached_features(
            {"row_id": df["row_id"].tolist(), "text": df["text"].tolist(), column: values},
            encode,
            [self.name, tokenizer_fingerprint(tokenizer), str(max_length), key, split_hash(df)],
            cache_dir,
        )

    def test_slices(self, test: pd.DataFrame) -> dict[str, Any]:
        """The protocol's slices of the test split, as boolean row masks by slice name."""
        return slice_masks(
            self.protocol.evaluate, list(test["text"]), {c: test[c].tolist() for c in test.columns}
        )

    def features_for_inference(self, df: pd.DataFrame, tokenizer: Any) -> Features:
        enc = tokenizer(df["text"].tolist(), truncation=True, max_length=self.protocol.model.max_length)
        return [
            {"input_ids": ids, "row_id": rid} for ids, rid in zip(enc["input_ids"], df["row_id"], strict=True)
        ]
