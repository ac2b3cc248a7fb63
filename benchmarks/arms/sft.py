"""SFT: tuneproof's sft task vs TRL ``SFTTrainer`` with its defaults, on the same conversations.

Both arms train the same causal LM on the same abstract-to-title conversations for one pass, with
the same batch size and TRL's default learning rate (2e-5), full fine-tuning (TRL's default), loss on
the answer only (TRL's default for prompt-completion data; tuneproof's assistant-only loss). What
differs is each side's engine: TRL's defaults (``use_cpu=True``, which TrainingArguments demands
on a CPU when bf16 is on, is the only setting added; bf16 autocast, gradient checkpointing, random
batches padded to their longest row, fused lm-head loss with entropy/accuracy metrics each step);
tuneproof's (bf16 autocast where native, length-grouped batches, no checkpointing, the lm head
projected only at labelled positions).

On a CPU without native bf16 (AVX2 only), TRL's default bf16 is emulated and slow, so a second TRL
arm ``trl_fp32`` (defaults plus ``bf16=False``) is also run there, to separate tuneproof's precision
choice from the rest of its engine.

Held-out loss: after training, both final models are scored by one scorer (tuneproof's
``score_nll`` over the answer tokens, fp32, no autocast) on the same held-out conversations, so the
comparison depends on the trained weights only.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.arms.common import peak_rss_mib, rss_mib, setup, shape_of
from benchmarks.data import SEED, chat_pairs, conversation, sft_split, smollm2_dir, tiny_llama_dir

LR = 2e-5  # TRL SFTConfig's default


def availability() -> str | None:
    """Why the SFT arm cannot run here, or None when it can."""
    import importlib.util

    for module, why in (
        ("tuneproof.tasks.sft", "tuneproof.tasks.sft does not exist yet"),
        ("trl", "trl is not installed"),
    ):
        try:
            if importlib.util.find_spec(module) is None:
                return why
        except ModuleNotFoundError:
            return why
    try:
        import tuneproof.tasks.sft  # noqa: F401
    except Exception as exc:  # a module mid-rewrite may not import
        return f"tuneproof.tasks.sft does not import ({type(exc).__name__}: {exc})"
    try:
        chat_pairs()
    except RuntimeError as exc:
        return str(exc)
    return None


def prepare(cfg: dict[str, Any]) -> dict[str, Any]:
    """Check availability and build/convert the model once, outside any measured subprocess."""
    why = availability()
    if why is not None:
        return {"skipped": why}
    try:
        model_dir = tiny_llama_dir() if cfg["model"] == "tiny" else smollm2_dir()
    except Exception as exc:
        return {"skipped": f"model {cfg['model']!r} unavailable ({type(exc).__name__}: {exc})"}
    from tuneproof.train.precision import cpu_has_native_bf16

    return {"model_dir": str(model_dir), "native_bf16": cpu_has_native_bf16()}


def _tuneproof_protocol(cfg: dict[str, Any]) -> Any:
    from tuneproof.protocol import validate_protocol

    return validate_protocol(
        {
            "name": "bench-sft",
            "task": "sft",
            "seed": SEED,
            "model": {"source": cfg["model_dir"], "max_length": cfg["max_tokens"]},
            "data": {"files": ["unused.jsonl"], "text_column": "input", "label_column": "ideal"},
            "train": {
                "method": "full",
                "learning_rate": LR,
                "scheduler": "linear",
                "epochs": 1,
                "batch_size": cfg["batch_size"],
                "max_grad_norm": 1.0,
                "precision": "auto",
            },
            "evaluate": {"batch_size": cfg["batch_size"]},
            "tracking": {"tensorboard": False},
        }
    )


def _frame(pairs: list[dict[str, Any]], prefix: str) -> Any:
    import pandas as pd

    return pd.DataFrame(
        {
            "row_id": [f"{prefix}{i}" for i in range(len(pairs))],
            "text": [json.dumps(p["prompt"]) for p in pairs],
            "label": [p["answer"] for p in pairs],
        }
    )


def _heldout_score(
    model: Any, tokenizer: Any, heldout: list[dict[str, Any]], cfg: dict[str, Any]
) -> dict[str, Any]:
    """Per-example answer-token NLL of ``model`` on the held-out conversations (fp32, same scorer)."""
    from tuneproof.tasks.generation import causal_nll, score_nll
    from tuneproof.tasks.registry import get_task

    task = get_task(_tuneproof_protocol(cfg))
    feats = task.features(_frame(heldout, "h"), tokenizer, Path(cfg["cache_dir"]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    t = time.perf_counter()
    nll, tokens = score_nll(model, feats, task.collate(pad), causal_nll, cfg["batch_size"], "fp32")
    return {
        "nll": nll.tolist(),
        "tokens": tokens.tolist(),
        "loss": float(nll.sum() / max(tokens.sum(), 1)),
        "seconds": time.perf_counter() - t,
    }


def run_tuneproof(cfg: dict[str, Any]) -> dict[str, Any]:
    setup(cfg["threads"])
    from tuneproof.tasks.registry import get_task
    from tuneproof.train.fit import fit
    from tuneproof.train.model_source import load_tokenizer, resolve_model
    from tuneproof.train.precision import choose_precision

    protocol = _tuneproof_protocol(cfg)
    task = get_task(protocol)
    precision, reason = choose_precision(protocol.train.precision)
    ref = resolve_model(protocol.model, Path.cwd())
    tokenizer = load_tokenizer(ref)
    train, heldout = sft_split(tokenizer, cfg["n_train"], cfg["n_heldout"], cfg["max_tokens"])
    feats = task.features(_frame(train, "t"), tokenizer, Path(cfg["cache_dir"]))
    lengths = {str(f["row_id"]): len(f["input_ids"]) for f in feats}
    step_end: dict[int, float] = {}

    def on_log(entry: dict[str, Any]) -> None:
        if not any(k.startswith("eval_") for k in entry):
            step_end[entry["step"]] = time.perf_counter()

    rss_before = rss_mib()
    with tempfile.TemporaryDirectory(prefix="bench-sft-tp-") as tmp:
        t0 = time.perf_counter()
        result = fit(
            task, protocol, ref, tokenizer, {"train": feats}, Path(tmp) / "ck", precision, on_log=on_log
        )
        t_end = time.perf_counter()
    peak = peak_rss_mib()  # before scoring, which is not part of training
    steps = sorted(step_end)
    out = {
        "arm": "tuneproof",
        "precision": precision,
        "precision_reason": reason,
        "steps": len(steps),
        "step_seconds": [step_end[s] - t0 for s in steps],
        "step_lengths": [[lengths[r] for r in ids] for ids in result.train.seen_row_ids],
        "real_tokens": result.train.real_tokens,
        "padded_tokens": result.train.padded_tokens,
        "wall_seconds": t_end - t0,
        "shape": shape_of(result.model).as_dict(),
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak,
    }
    if cfg.get("score_heldout"):
        out["heldout"] = _heldout_score(result.model, tokenizer, heldout, cfg)
    return out


def run_trl(cfg: dict[str, Any]) -> dict[str, Any]:
    setup(cfg["threads"])
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(cfg["model_dir"])
    train, heldout = sft_split(tokenizer, cfg["n_train"], cfg["n_heldout"], cfg["max_tokens"])
    # Conversational prompt-completion rows: TRL's documented format whose default loss is on the
    # completion only, the same tokens tuneproof trains on.
    ds = Dataset.from_list([{"prompt": p["prompt"], "completion": conversation(p)[-1:]} for p in train])
    batches: list[list[int]] = []
    step_end: dict[int, float] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            step_end[state.global_step] = time.perf_counter()

    rss_before = rss_mib()
    with tempfile.TemporaryDirectory(prefix="bench-sft-trl-") as tmp:
        extra: dict[str, Any] = {}
        if cfg.get("variant") == "fp32":
            extra["bf16"] = False  # what a careful user does on a CPU without native bf16
        args = SFTConfig(
            output_dir=tmp,
            per_device_train_batch_size=cfg["batch_size"],
            num_train_epochs=1,
            report_to="none",
            disable_tqdm=True,
            # Required on any CPU: with bf16=True (the default) TrainingArguments refuses to start
            # otherwise ("Your setup doesn't support bf16/gpu. You need to assign use_cpu").
            use_cpu=True,
            **extra,
        )
        trainer = SFTTrainer(model=cfg["model_dir"], args=args, train_dataset=ds, processing_class=tokenizer)
        inner = trainer.data_collator

        def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
            batch = inner(features)
            batches.append(batch["attention_mask"].sum(1).tolist())
            return batch

        trainer.data_collator = collate
        trainer.add_callback(Clock())
        t0 = time.perf_counter()
        trainer.train()
        t_end = time.perf_counter()
        peak = peak_rss_mib()
        steps = sorted(step_end)
        out = {
            "arm": "trl" if cfg.get("variant") != "fp32" else "trl_fp32",
            "precision": "bf16" if args.bf16 else "fp32",
            "gradient_checkpointing": bool(args.gradient_checkpointing),
            "packing": bool(args.packing),
            "steps": len(steps),
            "step_seconds": [step_end[s] - t0 for s in steps],
            "step_lengths": batches[: len(steps)],
            "real_tokens": sum(sum(b) for b in batches[: len(steps)]),
            "padded_tokens": sum(len(b) * max(b) for b in batches[: len(steps)]),
            "wall_seconds": t_end - t0,
            "shape": shape_of(trainer.model).as_dict(),
            "rss_before_mib": rss_before,
            "peak_rss_mib": peak,
        }
        if cfg.get("score_heldout"):
            out["heldout"] = _heldout_score(trainer.model, tokenizer, heldout, cfg)
    return out
