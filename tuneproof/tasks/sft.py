"""Instruction supervised fine-tuning (SFT) of causal LMs on chat or prompt/completion data.

Data: ``data.text_column`` holds OpenAI-style ``messages`` (then no label column), or a prompt
(string or messages ending with a user turn) with the answer in ``data.label_column``. Rows are
validated by :mod:`tuneproof.data.chat` and stored as one canonical conversation (JSON text).

Training applies the model's own chat template and puts the loss on assistant tokens only (labels
-100 elsewhere), found by rendering each assistant turn's prefix and mapping character spans to
tokens through the fast tokenizer's offsets, so a token is trained on exactly when its text lies in
an assistant turn. No packing: on CPU a block-diagonal mask over packed rows is slower than the
loop's length-grouped batches, so padding is kept small by grouping instead and reported.

Evaluation: held-out loss/perplexity on the assistant tokens, and greedy generations of the final
assistant turn on the test split scored with exact match, ROUGE-L, chrF and BLEU, all against the
base model with paired bootstrap intervals.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from tuneproof.data.chat import conversation_row_check, from_text
from tuneproof.data.prepare import TargetCheck, split_hash
from tuneproof.errors import TemplateError
from tuneproof.tasks.base import TaskEnv
from tuneproof.tasks.generation import (
    GenerativeTask,
    generation_frame,
    generative_metrics,
    generative_spec,
    new_outputs,
    samples,
)
from tuneproof.train.features import cached_features, pad_collate, tokenizer_fingerprint

IGNORE = -100
NO_PACKING_REASON = (
    "no packing: on CPU a dense block-diagonal mask over long packed rows trains slower than "
    "length-grouped batches of single examples; batches are grouped by length to keep padding low"
)
PACKING_REASON = (
    "packed: examples share rows of max_length tokens; position ids restart per example and no KV "
    "cache is used, so attention never crosses examples; train.batch_size counts packed rows"
)


def _template_messages(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def render(tokenizer: Any, messages: list[dict[str, Any]], generation_prompt: bool) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise TemplateError("the tokenizer has no chat template; sft needs one to format conversations")
    text = tokenizer.apply_chat_template(
        _template_messages(messages), tokenize=False, add_generation_prompt=generation_prompt
    )
    return str(text)


def assistant_spans(tokenizer: Any, messages: list[dict[str, Any]]) -> tuple[str, list[tuple[int, int]], int]:
    """The rendered conversation, the character spans of trained assistant turns, and where the
    final assistant turn starts (the end of the generation prompt).

    A turn's span runs from the end of the prefix rendered with the generation prompt to the end of
    the prefix including the turn, so it covers the answer and the template's end-of-turn marker
    (the model must learn to stop), and nothing the user or system wrote.
    """
    full = render(tokenizer, messages, False)
    spans: list[tuple[int, int]] = []
    final_start = len(full)
    for i, msg in enumerate(messages):
        if msg["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], True)
        upto = render(tokenizer, messages[: i + 1], False)
        if not (upto.startswith(before) and full.startswith(upto)):
            raise TemplateError(
                "the chat template renders a conversation's prefix differently from the whole "
                "conversation, so assistant tokens cannot be located reliably"
            )
        final_start = len(before)
        if msg.get("weight", 1):
            spans.append((len(before), len(upto)))
    return full, spans, final_start


def encode_conversation(
    tokenizer: Any, messages: list[dict[str, Any]], max_length: int | None
) -> dict[str, Any]:
    """Token ids, labels (-100 outside trained assistant turns), and the generation prompt's ids."""
    full, spans, final_start = assistant_spans(tokenizer, messages)
    try:
        enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError:
        raise TemplateError(
            "sft needs a fast tokenizer (character offsets locate assistant tokens)"
        ) from None
    ids: list[int] = list(enc["input_ids"])
    labels = [IGNORE] * len(ids)
    prompt_len = 0
    for t, (start, end) in enumerate(enc["offset_mapping"]):
        if end <= final_start:
            prompt_len = t + 1
        if end > start and any(s <= start < e for s, e in spans):
            labels[t] = ids[t]
    if labels:
        labels[0] = IGNORE  # the first token is never predicted; keeps the loop's token count exact
    total = len(ids)
    limit = max_length or total
    prompt = ids[:prompt_len][-limit:]  # keep the end: the generation prompt must stay intact
    ids, labels = ids[:limit], labels[:limit]
    return {
        "input_ids": ids,
        "labels": labels,
        "prompt_ids": prompt,
        "n_loss": sum(1 for x in labels if x != IGNORE),
        "truncated": total > limit,
        "prompt_truncated": prompt_len > limit,
        "full_length": total,
    }


def pack_features(features: list[dict[str, Any]], max_length: int) -> list[dict[str, Any]]:
    """Examples packed into rows of at most ``max_length`` tokens (first fit, longest first).

    Each example keeps its own labels (its first token is never a target, so no loss crosses a
    boundary) and gets position ids from 0, which is what keeps attention inside the example.
    """
    order = sorted(range(len(features)), key=lambda i: (-len(features[i]["input_ids"]), i))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = len(features[i]["input_ids"])
        for r, free in enumerate(room):
            if n <= free:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(max_length - n)
    packed = []
    for members in rows:
        parts = [features[i] for i in members]
        packed.append(
            {
                "row_id": "+".join(str(f["row_id"]) for f in parts),
                "input_ids": [t for f in parts for t in f["input_ids"]],
                "labels": [t for f in parts for t in f["labels"]],
                "position_ids": [p for f in parts for p in range(len(f["input_ids"]))],
                "n_loss": sum(f["n_loss"] for f in parts),
                "examples": len(parts),
            }
        )
    return packed


def packed_collate(pad_id: int) -> Any:
    """Collate packed rows (position ids, no attention mask); unpacked features go to pad_collate."""
    plain = pad_collate(pad_id, label_pad=IGNORE)

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        if "position_ids" not in features[0]:
            return plain(features)
        longest = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), longest), pad_id, dtype=torch.long)
        labels = torch.full((len(features), longest), IGNORE, dtype=torch.long)
        pos = torch.zeros((len(features), longest), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n], labels[i, :n] = torch.tensor(f["input_ids"]), torch.tensor(f["labels"])
            # Padding restarts at position 0: a block of its own that no real token attends to.
            pos[i, :n], pos[i, n:] = torch.tensor(f["position_ids"]), torch.arange(longest - n)
        real = sum(len(f["input_ids"]) for f in features)
        return {
            "input_ids": ids,
            "labels": labels,
            "position_ids": pos,
            "_count": int((labels != IGNORE).sum()),
            "_real_tokens": real,
            "_padded_tokens": ids.numel(),
            "row_ids": [f["row_id"] for f in features],
        }

    return collate


def final_answer(messages: list[dict[str, Any]]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "assistant")


def last_user(messages: list[dict[str, Any]]) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")


def _template_hash(tokenizer: Any) -> str:
    return hashlib.sha256(str(getattr(tokenizer, "chat_template", "")).encode()).hexdigest()


SPEC = generative_spec(
    "sft",
    "generates a response to an instruction",
    label_column_default=None,
    options=("sft", "data.labels", "data.label_column"),
    report_sections=("generation_samples", "sft_batching", "validation_vs_base"),
    pipeline_tag="text-generation",
)


class SftTask(GenerativeTask):
    spec = SPEC

    def __init__(self, protocol: Any, env: TaskEnv | None = None) -> None:
        super().__init__(protocol, env)

    # -- data ------------------------------------------------------------------------------------
    def target_check(self) -> TargetCheck:
        data, system = self.protocol.data, self.protocol.sft.system_prompt
        row_check = conversation_row_check(data.text_column, data.label_column, system)

        def check(value: Any) -> tuple[Any, str | None]:  # not used: check_row replaces it
            return value, None

        check.check_row = row_check  # type: ignore[attr-defined]
        return check

    def conversation(self, text: str, label: Any) -> list[dict[str, Any]]:
        messages = from_text(text)
        if messages[-1]["role"] != "assistant" and isinstance(label, str) and label:
            messages = [*messages, {"role": "assistant", "content": label}]
        return messages

    def token_lengths(self, tokenizer: Any) -> Any:
        """Token count of each whole rendered conversation, for the data report's length checks."""

        def lengths(texts: list[str]) -> list[int]:
            digest = hashlib.sha256("\x1e".join(texts).encode()).hexdigest()

            def encode(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
                return {
                    "n": [
                        encode_conversation(tokenizer, from_text(t), None)["full_length"]
                        for t in batch["text"]
                    ]
                }

            key = ["sft-lengths", tokenizer_fingerprint(tokenizer), _template_hash(tokenizer), digest]
            return [r["n"] for r in cached_features({"text": texts}, encode, key, self.env.cache_dir)]

        return lengths

    def features(self, df: pd.DataFrame, tokenizer: Any, cache_dir: Path | None) -> list[dict[str, Any]]:
        max_length = self.protocol.model.max_length

        def encode(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            rows = [
                encode_conversation(tokenizer, self.conversation(t, lab), max_length)
                for t, lab in zip(batch["text"], batch["label"], strict=True)
            ]
            return {
                k: [r[k] for r in rows]
                for k in ("input_ids", "labels", "prompt_ids", "n_loss", "truncated", "prompt_truncated")
            }

        key = [
            "sft",
            tokenizer_fingerprint(tokenizer),
            _template_hash(tokenizer),
            str(max_length),
            split_hash(df),
        ]
        labels = ["" if not isinstance(x, str) else x for x in df["label"]]
        return cached_features(
            {"row_id": df["row_id"].tolist(), "text": df["text"].tolist(), "label": labels},
            encode,
            key,
            cache_dir,
        )

    def features_for_inference(self, df: pd.DataFrame, tokenizer: Any) -> list[dict[str, Any]]:
        """Each text as one user turn, ready for generation (``tuneproof predict`` / serve)."""
        out = []
        for rid, text in zip(df["row_id"], df["text"], strict=True):
            prompt = tokenizer(
                render(tokenizer, [{"role": "user", "content": text}], True), add_special_tokens=False
            )["input_ids"][-self.protocol.model.max_length :]
            out.append({"row_id": rid, "input_ids": prompt, "prompt_ids": prompt})
        return out

    @property
    def packing(self) -> bool:
        chosen = self.protocol.sft.packing
        if chosen is None:
            # DP-SGD's guarantee is per training row: by default under DP, one conversation a row.
            dp = self.protocol.privacy is not None and self.protocol.privacy.dp_sgd is not None
            return torch.cuda.is_available() and not dp
        return chosen

    def collate(self, pad_id: int) -> Any:
        return packed_collate(pad_id)

    def resample(self, train_features: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
        """Drops examples whose assistant tokens were all truncated away (they would train on nothing),
        then packs the rest when packing is on."""
        kept = [f for f in train_features if f["n_loss"] > 0]
        return pack_features(kept, self.protocol.model.max_length) if self.packing else kept

    def evaluation_notes(self, features: Mapping[str, list[dict[str, Any]]]) -> dict[str, Any]:
        """What truncation cut from the training and test conversations, from their features."""
        truncation: dict[str, Any] = {"max_length": self.protocol.model.max_length}
        train = features.get("train")
        if train is not None:
            kept = [f for f in train if f["n_loss"] > 0]
            truncation["train"] = {
                "examples": len(train),
                "truncated": sum(bool(f["truncated"]) for f in train),
                "dropped_no_assistant_tokens": len(train) - len(kept),
                "assistant_tokens": int(sum(f["n_loss"] for f in kept)),
                "tokens": int(sum(len(f["input_ids"]) for f in kept)),
            }
            if self.packing:
                truncation["train"]["packed_rows"] = len(self.resample(train, 0))
        test = features.get("test")
        if test:
            truncation["test"] = {
                "examples": len(test),
                "truncated": sum(bool(f["truncated"]) for f in test),
                "prompt_truncated": sum(bool(f["prompt_truncated"]) for f in test),
                "no_assistant_tokens": sum(1 for f in test if f["n_loss"] == 0),
            }
        return {"truncation": truncation}

    # -- inference -------------------------------------------------------------------------------
    def predict(
        self, model: nn.Module, features: list[dict[str, Any]], pad_id: int, batch_size: int, precision: str
    ) -> np.ndarray:
        out = new_outputs(len(features))
        evaluating = bool(features) and "labels" in features[0]
        if evaluating:
            out["nll"], out["tokens"] = self.score(model, features, pad_id, batch_size, precision)
        self.generate_into(out, model, features, precision, evaluating, decoder_only=True)
        return out

    def evaluate(
        self,
        test: pd.DataFrame,
        outputs: np.ndarray,
        baselines: dict[str, np.ndarray],
        validation: dict[str, Any] | None,
    ) -> dict[str, Any]:
        convs = [self.conversation(t, lab) for t, lab in zip(test["text"], test["label"], strict=True)]
        refs = [final_answer(c) for c in convs]
        metrics = generative_metrics(self.protocol, outputs, baselines, refs)
        metrics["validation"] = validation
        metrics["samples"] = samples(
            outputs,
            baselines,
            [last_user(c) for c in convs],
            refs,
            test["row_id"].tolist(),
            self.protocol.generation.samples_in_report,
        )
        metrics["batching"] = {
            "packing": self.packing,
            "group_by_length": self.protocol.train.group_by_length,
            "reason": PACKING_REASON if self.packing else NO_PACKING_REASON,
            "loss_on": "assistant tokens only",
        }
        return metrics

    def prediction_frame(self, df: pd.DataFrame, outputs: np.ndarray) -> pd.DataFrame:
        refs = [
            final_answer(self.conversation(t, lab)) for t, lab in zip(df["text"], df["label"], strict=True)
        ]
        return generation_frame(df, outputs, refs)

    def format_prediction(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        return [{"generation": g} for g in outputs["generation"]]


__all__ = [
    "SftTask",
    "TemplateError",
    "assistant_spans",
    "encode_conversation",
    "pack_features",
    "packed_collate",
]
