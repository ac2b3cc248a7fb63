"""What the generative tasks (sft, dapt, seq2seq) share: token NLL, greedy decoding, the base-model
baseline, and the ``metrics.json`` layout.

Outputs of ``predict`` are a structured array (one row per test example or text block) with the
fields of :data:`OUTPUT_DTYPE`, so the runner's contract (``predict`` returns an ``np.ndarray``) holds
and the model and the base model are scored row for row on the same examples.

The base model (the one training started from) is the baseline: it is loaded again from the same
source and scored exactly like the fine-tuned model. What that needs beyond the protocol (the base
model's reference, the tokenizer, the precision, the cache) comes in the task's ``TaskEnv``, given
when the task is built; no call depends on an earlier one having run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from tuneproof.errors import TuneproofError
from tuneproof.evaluate.generation import (
    GENERATION_METRICS,
    LM_METRICS,
    generation_statistics,
    interval_group,
    lm_statistics,
    merge_groups,
    per_example_scores,
)
from tuneproof.protocol.schema import Protocol
from tuneproof.tasks.base import Baselines, Task, TaskEnv
from tuneproof.tasks.spec import TaskSpec
from tuneproof.train.features import inference_batches
from tuneproof.train.model_source import ModelRef

OUTPUT_DTYPE = np.dtype([("nll", "f8"), ("tokens", "i8"), ("generation", "O"), ("set", "O")])
# Architectures whose logits are exactly lm_head(final hidden state): no soft-capping or logit scaling.
# For them the loss projects only the positions that carry a label, which skips most of the
# vocabulary projection (49k x hidden per token) when only the answer tokens are trained on.
_PLAIN_HEAD_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "smollm3", "olmo2"})

NllFn = Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, torch.Tensor]]


def new_outputs(n: int, which: str = "test") -> np.ndarray:
    out = np.zeros(n, dtype=OUTPUT_DTYPE)
    out["generation"] = None
    out["set"] = which
    return out


# -- losses ----------------------------------------------------------------------------------------
def _plain_head(model: Any) -> tuple[nn.Module, nn.Module] | None:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if getattr(getattr(base, "config", None), "model_type", None) not in _PLAIN_HEAD_TYPES:
        return None
    return base.get_decoder(), base.get_output_embeddings()


def causal_nll(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row sums of next-token NLL over positions whose label is not -100, and per-row counts."""
    input_ids, labels = batch["input_ids"], batch["labels"]
    # Packed rows carry position ids restarting per example and no attention mask: transformers then
    # builds a block-diagonal causal mask (only without a KV cache), so no example sees another.
    inputs = {
        "input_ids": input_ids,
        "attention_mask": batch.get("attention_mask"),
        "position_ids": batch.get("position_ids"),
        "use_cache": False,
    }
    target = labels[:, 1:]
    keep = target != -100
    parts = _plain_head(model)
    if parts is not None:
        decoder, head = parts
        hidden = decoder(**inputs).last_hidden_state
        logits = head(hidden[:, :-1][keep]).float()
    else:
        logits = model(**inputs).logits[:, :-1][keep].float()
    per_token = F.cross_entropy(logits, target[keep], reduction="none")
    rows = keep.nonzero(as_tuple=True)[0]
    sums = torch.zeros(input_ids.shape[0], dtype=per_token.dtype, device=per_token.device)
    return sums.index_add(0, rows, per_token), keep.sum(dim=1)


def seq2seq_nll(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    labels = batch["labels"]
    # Passing labels lets the model build its own decoder inputs (shifted right, its start token).
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels, use_cache=False
    ).logits.float()
    keep = labels != -100
    per_token = F.cross_entropy(logits[keep], labels[keep], reduction="none")
    rows = keep.nonzero(as_tuple=True)[0]
    sums = torch.zeros(labels.shape[0], dtype=per_token.dtype, device=per_token.device)
    return sums.index_add(0, rows, per_token), keep.sum(dim=1)


def sum_loss(nll_fn: NllFn) -> Callable[[nn.Module, dict[str, Any]], tuple[torch.Tensor, int]]:
    """The training loop's contract: (sum of per-token losses, number of loss tokens)."""

    def loss(model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
        sums, counts = nll_fn(model, batch)
        return sums.sum(), int(counts.sum())

    return loss


def score_nll(
    model: nn.Module,
    features: Sequence[dict[str, Any]],
    collate: Callable[[list[dict[str, Any]]], dict[str, Any]],
    nll_fn: NllFn,
    batch_size: int,
    precision: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-example (sum of token NLL, token count), in the order of ``features``."""
    n = len(features)
    nll, tokens = np.zeros(n), np.zeros(n, dtype=np.int64)
    if n == 0:
        return nll, tokens
    lengths = np.array([len(f["input_ids"]) for f in features])
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"),
    ):
        for idx in inference_batches(lengths, batch_size):
            b = collate([features[i] for i in idx])
            b = {k: v.to(device) for k, v in b.items() if isinstance(v, torch.Tensor)}
            sums, counts = nll_fn(model, b)
            nll[idx] = sums.float().cpu().numpy()
            tokens[idx] = counts.cpu().numpy()
    model.train(was_training)
    return nll, tokens


def lm_summary(nll: np.ndarray, tokens: np.ndarray) -> dict[str, float]:
    total = int(tokens.sum())
    loss = float(nll.sum() / total) if total else float("nan")
    return {"loss": loss, "perplexity": math.exp(loss) if total else float("nan"), "tokens": total}


# -- decoding --------------------------------------------------------------------------------------
def _generation_config(tokenizer: Any, model: nn.Module, max_new_tokens: int) -> Any:
    from transformers import GenerationConfig

    # A fresh config: the checkpoint's sampling settings (temperature, top_p) must not leak into
    # what is documented as greedy decoding.
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    start = getattr(model.config, "decoder_start_token_id", None)
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        num_beams=1,
        eos_token_id=eos,
        pad_token_id=pad,
        decoder_start_token_id=start,
        bos_token_id=tokenizer.bos_token_id,
    )


def greedy_generate(
    model: nn.Module,
    tokenizer: Any,
    inputs: Sequence[Sequence[int]],
    max_new_tokens: int,
    batch_size: int,
    precision: str,
    decoder_only: bool,
) -> list[str]:
    """Greedy continuations of ``inputs`` (token ids), decoded without special tokens, in input order."""
    if not inputs:
        return []
    cfg = _generation_config(tokenizer, model, max_new_tokens)
    pad = cfg.pad_token_id if cfg.pad_token_id is not None else 0
    lengths = np.array([len(x) for x in inputs])
    out: list[str] = [""] * len(inputs)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"),
    ):
        for idx in inference_batches(lengths, batch_size):
            longest = int(lengths[idx].max())
            ids = torch.full((len(idx), longest), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), longest), dtype=torch.long)
            for row, i in enumerate(idx):
                seq = torch.tensor(list(inputs[i]), dtype=torch.long)
                # Decoder-only models continue from the last position, so prompts are padded on the left.
                if decoder_only:
                    ids[row, longest - len(seq) :], mask[row, longest - len(seq) :] = seq, 1
                else:
                    ids[row, : len(seq)], mask[row, : len(seq)] = seq, 1
            generated = model.generate(  # type: ignore[operator]
                input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=cfg
            )
            new = generated[:, longest:] if decoder_only else generated
            for row, i in enumerate(idx):
                toks = new[row].tolist()
                if cfg.eos_token_id is not None and cfg.eos_token_id in toks:
                    toks = toks[: toks.index(cfg.eos_token_id)]
                out[i] = tokenizer.decode(toks, skip_special_tokens=True).strip()
    model.train(was_training)
    return out


# -- metrics.json ----------------------------------------------------------------------------------
def generative_metrics(
    protocol: Protocol,
    outputs: np.ndarray,
    baselines: dict[str, np.ndarray],
    references: Sequence[str],
) -> dict[str, Any]:
    """Loss/perplexity over every test example and generation metrics over the generated ones."""
    spec, seed = protocol.evaluate, protocol.seed
    n = len(outputs)
    groups = [
        interval_group(
            n,
            lm_statistics(outputs["nll"], outputs["tokens"]),
            {b: lm_statistics(o["nll"], o["tokens"]) for b, o in baselines.items()},
            spec.confidence,
            spec.bootstrap_samples,
            seed,
        )
    ]
    gen_rows = [i for i, g in enumerate(outputs["generation"]) if g is not None]
    if gen_rows:
        refs = [references[i] for i in gen_rows]
        base_gen = {
            b: [o["generation"][i] or "" for i in gen_rows]
            for b, o in baselines.items()
            if all(o["generation"][i] is not None for i in gen_rows)
        }
        groups.append(
            interval_group(
                len(gen_rows),
                generation_statistics([outputs["generation"][i] for i in gen_rows], refs),
                {b: generation_statistics(g, refs) for b, g in base_gen.items()},
                spec.confidence,
                spec.bootstrap_samples,
                seed + 1,
            )
        )
    metrics: dict[str, Any] = {
        "task": protocol.task,
        "split": "test",
        "n": n,
        "n_generated": len(gen_rows),
        "confidence": spec.confidence,
        "bootstrap_samples": spec.bootstrap_samples,
        **merge_groups(groups),
        "generation": {
            "decoding": "greedy",
            "max_new_tokens": protocol.generation.max_new_tokens,
            "examples": len(gen_rows),
            "subset": "all test rows" if len(gen_rows) == n else f"the first {len(gen_rows)} test rows",
            "metrics": list(GENERATION_METRICS),
            "scales": {"exact_match": "0-1", "rouge_l": "0-1 (F1)", "chrf": "0-100", "bleu": "0-100"},
        },
    }
    return metrics


def samples(
    outputs: np.ndarray,
    baselines: dict[str, np.ndarray],
    prompts: Sequence[str],
    references: Sequence[str],
    row_ids: Sequence[str],
    limit: int,
) -> list[dict[str, Any]]:
    """The first ``limit`` generated test rows with the model's and each baseline's output."""
    rows = [i for i, g in enumerate(outputs["generation"]) if g is not None][:limit]
    out = []
    for i in rows:
        entry: dict[str, Any] = {
            "row_id": row_ids[i],
            "prompt": prompts[i][:2000],
            "reference": references[i],
            "model": outputs["generation"][i],
        }
        scores = {
            "model": float(per_example_scores([outputs["generation"][i]], [references[i]])["rouge_l"][0])
        }
        for b, o in baselines.items():
            entry[b] = o["generation"][i]
            if o["generation"][i] is not None:
                scores[b] = float(per_example_scores([o["generation"][i]], [references[i]])["rouge_l"][0])
        entry["rouge_l"] = scores
        out.append(entry)
    return out


def generation_frame(df: pd.DataFrame, outputs: np.ndarray, references: Sequence[str]) -> pd.DataFrame:
    gens = outputs["generation"]
    em = np.full(len(df), np.nan)
    rl = np.full(len(df), np.nan)
    rows = [i for i, g in enumerate(gens) if g is not None]
    if rows:
        scores = per_example_scores([gens[i] for i in rows], [references[i] for i in rows])
        em[rows], rl[rows] = scores["exact_match"], scores["rouge_l"]
    return pd.DataFrame(
        {
            "row_id": df["row_id"].to_numpy(),
            "reference": list(references),
            "generation": list(gens),
            "nll": outputs["nll"],
            "tokens": outputs["tokens"],
            "exact_match": em,
            "rouge_l": rl,
        }
    )


def metric_names(with_generation: bool) -> list[str]:
    return [*LM_METRICS, *(GENERATION_METRICS if with_generation else ())]


def generative_spec(name: str, purpose: str, **extra: Any) -> TaskSpec:
    """The metadata every generative task shares: scored against the model it started from."""
    return TaskSpec(
        name=name,
        purpose=purpose,
        baselines=("base_model",),
        default_baselines=("base_model",),
        selection_metrics=("loss", "perplexity"),
        stratify=False,
        gradient_checkpointing=True,
        generative=True,
        **extra,
    )


class GenerativeTask(Task):
    """The parts of the task contract every generative task shares; subclasses add data and decoding."""

    peft_type = "CAUSAL_LM"
    with_generation = True

    def __init__(self, protocol: Protocol, env: TaskEnv | None = None) -> None:
        super().__init__(protocol, env)

    @property
    def tokenizer(self) -> Any:
        """The tokenizer generation decodes with, from the task's environment."""
        if self.env.tokenizer is None:
            raise TuneproofError(
                f"the {self.name} task needs its tokenizer: get_task(protocol, TaskEnv(tokenizer=...))"
            )
        return self.env.tokenizer

    # -- model -----------------------------------------------------------------------------------
    def auto_class(self) -> Any:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    def load_model(self, ref: ModelRef) -> nn.Module:
        from tuneproof.train.model_source import load_pretrained

        model = load_pretrained(self.auto_class(), ref)
        if model.config.pad_token_id is None and model.config.eos_token_id is not None:
            model.config.pad_token_id = model.config.eos_token_id
        return model

    def build_model(self, ref: ModelRef) -> nn.Module:
        return self.load_model(ref)

    def load_packaged(self, model_dir: Path) -> nn.Module:
        return self.auto_class().from_pretrained(model_dir, use_safetensors=True)

    def peft_task_type(self) -> str:
        return self.peft_type

    def metric_names(self) -> list[str]:
        return metric_names(self.with_generation)

    # -- training --------------------------------------------------------------------------------
    def nll(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return causal_nll(model, batch)

    def collate(self, pad_id: int) -> Any:
        from tuneproof.train.features import pad_collate

        return pad_collate(pad_id, label_pad=-100)

    def loss_fn(self, train_features: list[dict[str, Any]]) -> Any:
        return sum_loss(self.nll)

    # -- scoring ---------------------------------------------------------------------------------
    def score(
        self,
        model: nn.Module,
        features: Sequence[dict[str, Any]],
        pad_id: int,
        batch_size: int,
        precision: str,
    ) -> tuple[np.ndarray, np.ndarray]:
        return score_nll(model, features, self.collate(pad_id), self.nll, batch_size, precision)

    def validation_metrics(
        self, model: nn.Module, features: list[dict[str, Any]], pad_id: int, batch_size: int, precision: str
    ) -> dict[str, float]:
        summary = lm_summary(*self.score(model, features, pad_id, batch_size, precision))
        return {"loss": summary["loss"], "perplexity": summary["perplexity"]}

    def generate_into(
        self,
        out: np.ndarray,
        model: nn.Module,
        features: Sequence[dict[str, Any]],
        precision: str,
        evaluating: bool,
        decoder_only: bool,
    ) -> None:
        """Greedy generations from each feature's prompt into ``out["generation"]``; on the test split
        only the first ``generation.test_examples`` rows (the split is shuffled)."""
        gen = self.protocol.generation
        count = min(gen.test_examples or len(features), len(features)) if evaluating else len(features)
        texts = greedy_generate(
            model,
            self.tokenizer,
            [features[i]["prompt_ids"] for i in range(count)],
            gen.max_new_tokens,
            gen.batch_size,
            precision,
            decoder_only=decoder_only,
        )
        for i, text in enumerate(texts):
            out["generation"][i] = text

    def pad_id(self) -> int:
        tok = self.env.tokenizer
        return tok.pad_token_id if tok is not None and tok.pad_token_id is not None else 0

    def baselines(self, prepared: Any, test: pd.DataFrame, device: torch.device | None = None) -> Baselines:
        """The base model, scored on the same test rows (and validation split) as the fine-tuned one."""
        if "base_model" not in self.protocol.evaluate.baselines:
            return Baselines({})
        env = self.env
        if env.ref is None:
            raise TuneproofError("the base-model baseline needs the base model's reference (TaskEnv.ref)")
        base = self.load_model(env.ref)
        if device is not None:
            base.to(device)
        batch_size = self.protocol.evaluate.batch_size
        torch.manual_seed(self.protocol.seed)
        feats = self.features(test, self.tokenizer, env.cache_dir)
        outputs: np.ndarray = self.predict(base, feats, self.pad_id(), batch_size, env.precision)
        validation: dict[str, dict[str, float]] = {}
        val = prepared.splits.get("validation")
        if val is not None and len(val):
            val_feats = self.features(val, self.tokenizer, env.cache_dir)
            validation["base_model"] = self.validation_metrics(
                base, val_feats, self.pad_id(), batch_size, env.precision
            )
        del base
        return Baselines({"base_model": outputs}, validation)


__all__ = [
    "OUTPUT_DTYPE",
    "GenerativeTask",
    "causal_nll",
    "generation_frame",
    "generative_metrics",
    "generative_spec",
    "greedy_generate",
    "lm_summary",
    "metric_names",
    "new_outputs",
    "samples",
    "score_nll",
    "seq2seq_nll",
    "sum_loss",
]
