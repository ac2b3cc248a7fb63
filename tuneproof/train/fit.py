"""The train stage: build the model for the protocol's method, tokenise, run the loop."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tuneproof.errors import Problem, ProtocolError, TuneproofError
from tuneproof.protocol.schema import Protocol
from tuneproof.tasks.base import Task
from tuneproof.train import distributed
from tuneproof.train.loop import LoopConfig, TrainResult, set_memory_format, train_loop
from tuneproof.train.model_source import ModelRef
from tuneproof.train.precision_probe import ProbeChoice


@dataclass
class FitResult:
    model: nn.Module
    train: TrainResult
    features: dict[str, list[dict[str, Any]]]
    # The precision the model was trained in, and is to be scored and served in: the one handed to
    # fit(), or the precision probe's choice (then in ``probe``, with what it measured).
    precision: str
    dp_sgd: dict[str, Any] | None = None  # the privacy record of a DP-SGD run (tuneproof.privacy.dp_loop)
    probe: ProbeChoice | None = None


def set_threads(protocol: Protocol) -> int:
    threads = protocol.train.threads or int(os.environ.get("TUNEPROOF_THREADS", 0)) or torch.get_num_threads()
    torch.set_num_threads(threads)
    return threads


def apply_method(model: nn.Module, protocol: Protocol, task: Task) -> nn.Module:
    spec = protocol.train
    if spec.gradient_checkpointing:
        hf: Any = model
        if not getattr(hf, "supports_gradient_checkpointing", False):
            raise TuneproofError(
                f"train.gradient_checkpointing: {type(model).__name__} does not support it; set it to false"
            )
        # Non-reentrant: works with frozen inputs (LoRA, head) and restores the RNG for dropout, so
        # results are the same as without it.
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        hf.config.use_cache = False  # a KV cache is useless in training and refused with it
    if spec.dropout is not None:
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.p = spec.dropout
    if spec.method == "head":
        # The head is whatever the pretrained checkpoint did not have: parameters outside base_model.
        base = getattr(model, "base_model", None)
        base_ids = {id(p) for p in base.parameters()} if base is not None and base is not model else set()
        for p in model.parameters():
            p.requires_grad = id(p) not in base_ids
    elif spec.method == "lora":
        from peft import LoraConfig, get_peft_model

        targets, modules_to_save = task.lora_modules(model, spec.lora.target_modules)
        cfg = LoraConfig(
            task_type=task.peft_task_type(),
            r=spec.lora.r,
            lora_alpha=spec.lora.alpha,  # type: ignore[arg-type]  # PEFT takes a float (scaling = alpha / r), annotates int
            lora_dropout=spec.lora.dropout,
            target_modules=targets,
            modules_to_save=modules_to_save,
        )
        model = get_peft_model(model, cfg)
    return model


def build_features(
    task: Task, prepared_splits: dict[str, Any], tokenizer: Any, cache: Path | None
) -> dict[str, list[dict[str, Any]]]:
    return {name: task.features(df, tokenizer, cache) for name, df in prepared_splits.items()}


def fit(
    task: Task,
    protocol: Protocol,
    ref: ModelRef,
    tokenizer: Any,
    features: dict[str, list[dict[str, Any]]],
    checkpoint_dir: Path,
    precision: str,
    resume: bool = False,
    on_log: Any = None,
    splits: dict[str, Any] | None = None,
) -> FitResult:
    """``splits`` (the prepared data frames) is needed by ``train.method: setfit``, which trains on
    the texts rather than on token ids."""
    if protocol.train.method == "setfit":
        return _fit_setfit(task, protocol, ref, features, checkpoint_dir, splits, precision)
    torch.manual_seed(protocol.seed)  # the new head's initial weights depend on it
    model = apply_method(task.build_model(ref), protocol, task)
    train_feats = task.resample(features["train"], protocol.seed)
    val = features.get("validation") or []
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    choice = None
    if probes_precision(task, protocol) and train_feats:
        from tuneproof.train.precision_probe import probe

        batch = task.collate(pad_id)(train_feats[: protocol.train.batch_size])
        choice = probe(
            model, batch, task.loss_fn(train_feats), protocol.train, precision, checkpoint_dir, resume
        )
        precision = choice.precision

    def eval_fn(m: nn.Module) -> dict[str, float]:
        return task.validation_metrics(m, val, pad_id, protocol.evaluate.batch_size, precision)

    es = protocol.train.early_stopping
    selection = (es.metric if es else task.selection_metric) if val else None
    cfg = LoopConfig(
        spec=protocol.train,
        seed=protocol.seed,
        checkpoint_dir=checkpoint_dir,
        lengths=np.array([task.feature_length(f) for f in train_feats]),
        row_ids=[str(f["row_id"]) for f in train_feats],
        selection_metric=selection,
        eval_fn=eval_fn if val else None,
        on_log=on_log,
        precision=precision,
        augment=task.train_augment(protocol.seed),
        channels_last=choice is not None and choice.channels_last,
    )
    dp = protocol.privacy.dp_sgd if protocol.privacy is not None else None
    if dp is not None:
        from tuneproof.privacy.dp_loop import check_dp_supported, dp_train_loop
        from tuneproof.tasks.encoder import EncoderTask
        from tuneproof.tasks.sft import SftTask
        from tuneproof.train.distributed import world_size

        if not isinstance(task, EncoderTask | SftTask):
            raise ProtocolError(
                [Problem("privacy.dp_sgd", f"supported for the encoder tasks and sft, not {protocol.task}")]
            )
        packed = isinstance(task, SftTask) and task.packing
        check_dp_supported(model, cfg, world_size(), packed=packed)
        dp_result, record = dp_train_loop(
            model, train_feats, task.collate(pad_id), task.loss_fn(train_feats), cfg, dp, resume=resume
        )
        return FitResult(model, dp_result, features, precision, dp_sgd=record)
    result = train_loop(
        model, train_feats, task.collate(pad_id), task.loss_fn(train_feats), cfg, resume=resume
    )
    if result.full_state is not None:
        # Trained under FSDP: `model` holds this rank's shards. Rank 0 hands on a fresh copy of the
        # same architecture with the gathered full weights, like the model of a 1-process run.
        model = apply_method(task.build_model(ref), protocol, task)
        model.load_state_dict(result.full_state, strict=True)
        result.full_state = None
    if cfg.channels_last:  # hand on a plain model: safetensors, ONNX and serving expect contiguous weights
        model = set_memory_format(model, False)
    return FitResult(model, result, features, precision, probe=choice)


def probes_precision(task: Task, protocol: Protocol) -> bool:
    """Whether this run times its candidates (train/precision_probe.py) instead of trusting the CPU
    flags: a task that asks for it, ``precision: auto``, on CPU, in one process."""
    return (
        task.spec.precision_probe
        and protocol.train.precision == "auto"
        and not torch.cuda.is_available()
        and distributed.world_size() == 1
    )


def _fit_setfit(
    task: Task,
    protocol: Protocol,
    ref: ModelRef,
    features: dict[str, list[dict[str, Any]]],
    checkpoint_dir: Path,
    splits: dict[str, Any] | None,
    precision: str,
) -> FitResult:
    from tuneproof.train.setfit_fit import fit_setfit, texts_of

    if splits is None:
        raise TuneproofError("train.method setfit needs the prepared splits (their texts)")
    if distributed.world_size() > 1:
        raise TuneproofError("train.method setfit runs in one process; start it without torchrun")
    train = features["train"]
    # One label id per row (classification) or a multi-hot list (multilabel): the only two tasks
    # whose spec accepts train.setfit.
    multilabel = bool(train) and isinstance(train[0]["labels"], list)
    model, result = fit_setfit(
        protocol,
        ref,
        texts_of(train, splits, "train"),
        [f["labels"] for f in train],
        len(task.labels),
        multilabel,
        checkpoint_dir / "setfit",
    )
    return FitResult(model, result, features, precision)
