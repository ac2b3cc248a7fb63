"""Domain-adaptive continued pretraining (DAPT) of a causal LM on raw domain text.

Each split's documents (plain text lines, or a JSONL/CSV text column) are tokenised, joined with the
EOS token between documents, and cut into fixed blocks of ``dapt.block_size`` tokens (default
``model.max_length``); the last, shorter block of a split is kept. Blocks are contiguous text, so no
attention mask beyond the block is needed and there is no padding except that one block.

Evaluation: perplexity on the held-out domain blocks (the test split) and on a held-out *general*
text (``dapt.general_text``), which shows what was forgotten; both with bootstrap intervals over
blocks and paired against the base model. Gates use ``perplexity`` and ``general_perplexity``
(lower is better), e.g. ``{metric: general_perplexity, beats: base_model, by: -5}`` allows at most
5 points of forgetting at the interval's upper bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from tuneproof.data.locate import resolve_location
from tuneproof.data.prepare import TargetCheck, sha256_file, split_hash
from tuneproof.data.readers import read_file
from tuneproof.errors import DataValidationError, Problem
from tuneproof.evaluate.generation import interval_group, lm_statistics, merge_groups
from tuneproof.tasks.base import TaskEnv
from tuneproof.tasks.generation import GenerativeTask, generative_spec, new_outputs
from tuneproof.train.features import cached_features, tokenizer_fingerprint

IGNORE = -100


def chunk_blocks(docs: list[list[int]], block_size: int, eos_id: int | None) -> list[list[int]]:
    """Concatenate documents (EOS between them) and cut into blocks; a final block of < 2 tokens has
    nothing to predict and is dropped."""
    stream: list[int] = []
    for ids in docs:
        stream.extend(ids)
        if eos_id is not None:
            stream.append(eos_id)
    blocks = [stream[i : i + block_size] for i in range(0, len(stream), block_size)]
    return [b for b in blocks if len(b) >= 2]


def block_features(blocks: list[list[int]], prefix: str) -> list[dict[str, Any]]:
    # Label 0 is never predicted; -100 there keeps the collate's token count equal to the loss's.
    return [
        {"row_id": f"{prefix}block-{i}", "input_ids": b, "labels": [IGNORE, *b[1:]]}
        for i, b in enumerate(blocks)
    ]


SPEC = generative_spec(
    "dapt",
    "is a language model adapted to a domain",
    label_column_default=None,
    options=("dapt", "data.labels", "privacy.audit.canaries"),
    report_sections=("dapt_forgetting", "validation_vs_base"),
    pipeline_tag="text-generation",
)


class DaptTask(GenerativeTask):
    spec = SPEC
    with_generation = False

    def __init__(self, protocol: Any, env: TaskEnv | None = None) -> None:
        super().__init__(protocol, env)
        self.block_size = protocol.dapt.block_size or protocol.model.max_length
        self.general_texts: list[str] = []
        self.general_sources: list[dict[str, Any]] = []

    def target_check(self) -> TargetCheck:
        def no_target(value: Any) -> tuple[Any, str | None]:
            return None, None

        return no_target

    def metric_names(self) -> list[str]:
        names = ["loss", "perplexity"]
        return [*names, "general_loss", "general_perplexity"] if self.protocol.dapt.general_text else names

    def use_base_dir(self, base_dir: Path) -> None:
        """Read the general text now, so a missing or malformed file stops the run before training."""
        spec = self.protocol.dapt
        problems: list[Problem] = []
        texts: list[str] = []
        for i, loc in enumerate(spec.general_text):
            path, problem = resolve_location(loc, base_dir, f"dapt.general_text[{i}]")
            if problem is not None:
                problems.append(problem)
                continue
            assert path is not None
            result = read_file(path, spec.general_format, self.protocol.data.encoding)
            problems += result.problems
            column = spec.general_text_column  # plain text files read as one column named "text"
            if result.rows and column not in result.columns:
                problems.append(Problem(str(path), f"column {column!r} (dapt.general_text_column) not found"))
                continue
            rows = [r.get(column) for r in result.rows]
            texts += [t for t in rows if isinstance(t, str) and t.strip()]
            self.general_sources.append(
                {"file": str(path), "sha256": sha256_file(path), "documents": len(rows)}
            )
        if spec.general_text and not texts and not problems:
            problems.append(Problem("dapt.general_text", "no text found"))
        if problems:
            raise DataValidationError(problems, "general text (dapt.general_text)")
        self.general_texts = texts

    def _blocks(
        self, texts: list[str], row_ids: list[str], tokenizer: Any, key: list[str], cache_dir: Path | None
    ) -> list[list[int]]:
        def encode(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            return {"ids": tokenizer(batch["text"], add_special_tokens=False)["input_ids"]}

        rows = cached_features({"row_id": row_ids, "text": texts}, encode, key, cache_dir)
        return chunk_blocks([r["ids"] for r in rows], self.block_size, tokenizer.eos_token_id)

    def features(self, df: pd.DataFrame, tokenizer: Any, cache_dir: Path | None) -> list[dict[str, Any]]:
        key = ["dapt-docs", tokenizer_fingerprint(tokenizer), split_hash(df)]
        blocks = self._blocks(df["text"].tolist(), df["row_id"].tolist(), tokenizer, key, cache_dir)
        return block_features(blocks, "")

    def features_for_inference(self, df: pd.DataFrame, tokenizer: Any) -> list[dict[str, Any]]:
        """Each text scored on its own (its first ``block_size`` tokens), for ``tuneproof predict``."""
        filler = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        # An empty text still gets a row (0 scored tokens), so outputs stay aligned with inputs.
        ids = [
            x[: self.block_size] or [filler]
            for x in tokenizer(df["text"].tolist(), add_special_tokens=False)["input_ids"]
        ]
        return [
            {"row_id": rid, "input_ids": x, "labels": [IGNORE, *x[1:]]}
            for rid, x in zip(df["row_id"], ids, strict=True)
        ]

    def general_features(self) -> list[dict[str, Any]]:
        if not self.general_texts:
            return []
        import hashlib

        digest = hashlib.sha256("\x1e".join(self.general_texts).encode()).hexdigest()
        tokenizer = self.tokenizer
        key = ["dapt-general", tokenizer_fingerprint(tokenizer), digest]
        ids = [f"general:{i}" for i in range(len(self.general_texts))]
        blocks = self._blocks(self.general_texts, ids, tokenizer, key, self.env.cache_dir)
        return block_features(blocks, "general-")

    def _cap(self, feats: list[dict[str, Any]]) -> list[dict[str, Any]]:
        cap = self.protocol.dapt.max_eval_blocks
        return feats[:cap] if cap else feats

    def predict(
        self, model: nn.Module, features: list[dict[str, Any]], pad_id: int, batch_size: int, precision: str
    ) -> np.ndarray:
        """Per-block NLL of the domain test blocks, then of the general-text blocks (field ``set``)."""
        domain, general = self._cap(features), self._cap(self.general_features())
        out = new_outputs(len(domain) + len(general))
        out["set"][len(domain) :] = "general"
        for start, feats in ((0, domain), (len(domain), general)):
            nll, tokens = self.score(model, feats, pad_id, batch_size, precision)
            out["nll"][start : start + len(feats)], out["tokens"][start : start + len(feats)] = nll, tokens
        return out

    def evaluate(
        self,
        test: pd.DataFrame,
        outputs: np.ndarray,
        baselines: dict[str, np.ndarray],
        validation: dict[str, Any] | None,
    ) -> dict[str, Any]:
        spec, seed = self.protocol.evaluate, self.protocol.seed
        groups = []
        for offset, (which, prefix) in enumerate((("test", ""), ("general", "general_"))):
            rows = outputs["set"] == which
            if not rows.any():
                continue
            groups.append(
                interval_group(
                    int(rows.sum()),
                    lm_statistics(outputs["nll"][rows], outputs["tokens"][rows], prefix),
                    {
                        b: lm_statistics(o["nll"][o["set"] == which], o["tokens"][o["set"] == which], prefix)
                        for b, o in baselines.items()
                    },
                    spec.confidence,
                    spec.bootstrap_samples,
                    seed + offset,
                )
            )
        domain = outputs["set"] == "test"
        general = outputs["set"] == "general"
        metrics: dict[str, Any] = {
            "task": "dapt",
            "split": "test",
            "n": int(domain.sum()),
            "unit": "block",
            "confidence": spec.confidence,
            "bootstrap_samples": spec.bootstrap_samples,
            **merge_groups(groups),
            "validation": validation,
            "language_modeling": {
                "block_size": self.block_size,
                "packing": "documents joined with EOS and cut into fixed blocks",
                "domain_test": {
                    "blocks": int(domain.sum()),
                    "tokens": int(outputs["tokens"][domain].sum()),
                    "documents": len(test),
                },
                "general_text": {
                    "blocks": int(general.sum()),
                    "tokens": int(outputs["tokens"][general].sum()),
                    "sources": self.general_sources,
                },
                "max_eval_blocks": self.protocol.dapt.max_eval_blocks,
            },
        }
        return metrics

    def prediction_frame(self, df: pd.DataFrame, outputs: np.ndarray) -> pd.DataFrame:
        # One row per scored block, not per document: blocks are the unit of the intervals.
        return pd.DataFrame(
            {
                "block": np.arange(len(outputs)),
                "set": list(outputs["set"]),
                "nll": outputs["nll"],
                "tokens": outputs["tokens"],
            }
        )

    def format_prediction(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        return [
            {
                "nll": float(o["nll"]),
                "tokens": int(o["tokens"]),
                "perplexity": float(np.exp(o["nll"] / o["tokens"])) if o["tokens"] else None,
            }
            for o in outputs
        ]


__all__ = ["DaptTask", "block_features", "chunk_blocks"]
