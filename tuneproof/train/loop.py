"""The training loop: length-grouped batches, gradient accumulation, bf16 autocast, validation,
early stopping, crash-consistent checkpoints, exact resume, and a hard stop on non-finite values.

Hand-written on top of accelerate rather than transformers' Trainer because the guarantees tuneproof
makes are not Trainer's: Trainer replaces a NaN loss in its logs with a running average and keeps
going, writes checkpoints in place and as pickles, and cannot say which examples a step saw. The
loop stays small because accelerate owns devices, autocast and process groups, and the task owns
the model's forward pass and loss.
"""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tuneproof.errors import Interrupted, TrainingDiverged, TuneproofError
from tuneproof.evaluate.direction import lower_is_better
from tuneproof.protocol.schema import TrainSpec
from tuneproof.train.checkpoint import (
    CheckpointContents,
    gather_full_model,
    gather_full_state,
    latest_complete,
    load_checkpoint,
    rotate,
    save_checkpoint,
    scatter_full_optimizer,
    scatter_full_weights,
)
from tuneproof.train.distributed import (
    accelerator_kwargs,
    all_reduce_sum,
    check_supported,
    data_parallel_pass,
    evaluate_on_main,
    global_grad_norm,
    is_sharded,
    use_fsdp_on_cpu,
)

Batch = dict[str, Any]
# (model, batch) -> (sum of per-example or per-token losses, number of terms in that sum)
LossFn = Callable[[nn.Module, Batch], tuple[torch.Tensor, int]]
EvalFn = Callable[[nn.Module], dict[str, float]]


@dataclass
class LoopConfig:
    spec: TrainSpec
    seed: int
    checkpoint_dir: Path
    lengths: np.ndarray  # token length of each training example, for length-grouped batches
    row_ids: list[str]
    selection_metric: str | None = None  # validation metric that picks the final model
    eval_fn: EvalFn | None = None
    on_log: Callable[[dict[str, Any]], None] | None = None
    precision: str = "fp32"
    # (micro-batch features, epoch) -> features as the model sees them (image augmentation); a pure
    # function, so a resumed run trains on the same inputs as an uninterrupted one.
    augment: Callable[[list[Batch], int], list[Batch]] | None = None
    # Train in channels-last (NHWC) memory layout: the model's 4-D weights and each batch's 4-D
    # inputs. Chosen by the image precision probe (train/precision_probe.py); one process only.
    channels_last: bool = False


@dataclass
class TrainResult:
    log_history: list[dict[str, Any]]
    steps: int
    best_step: int | None
    best_metric: float | None
    stopped_early: bool
    resumed_from: str | None
    skipped_checkpoints: list[str]
    real_tokens: int
    padded_tokens: int
    train_seconds: float
    seen_row_ids: list[list[str]] = field(default_factory=list)
    # Under FSDP, the final model's full state dict on rank 0 (the model object itself holds shards).
    full_state: dict[str, torch.Tensor] | None = None

    @property
    def padding_efficiency(self) -> float:
        return self.real_tokens / self.padded_tokens if self.padded_tokens else 1.0


def epoch_batches(
    n: int, lengths: np.ndarray, batch: int, seed: int, epoch: int, group_by_length: bool
) -> list[np.ndarray]:
    """The optimizer-step batches of one epoch, a pure function of (seed, epoch).

    Grouping is done on whole optimizer steps (batch x accumulation), so changing how a step is cut
    into micro-batches never changes which examples it sees. Like transformers' LengthGroupedSampler:
    shuffle, sort within mega-batches of 50 steps by length, then shuffle the order of the steps.
    """
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(n)
    if group_by_length:
        mega = batch * 50
        chunks = [perm[i : i + mega] for i in range(0, n, mega)]
        perm = np.concatenate([c[np.argsort(-lengths[c], kind="stable")] for c in chunks])
    steps = [perm[i : i + batch] for i in range(0, n, batch)]
    if group_by_length:
        order = rng.permutation(len(steps))
        steps = [steps[i] for i in order]
    return steps


class _StopFlag:
    """Turns SIGINT/SIGTERM into a flag checked between steps, so a checkpoint is saved first."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _improved(value: float, best: float | None, metric: str, min_delta: float) -> bool:
    if best is None:
        return True
    if lower_is_better(metric):
        return value < best - min_delta
    return value > best + min_delta


def _format_eta(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m{seconds % 60:02d}s"
    )


def build_optimizer(model: nn.Module, spec: TrainSpec) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TuneproofError("no trainable parameters: check train.method and lora.target_modules")
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.learning_rate, momentum=0.9, weight_decay=spec.weight_decay)
    # torch's default AdamW on CPU is the per-tensor loop (foreach is CUDA-only by default); the fused
    # kernel made a MiniLM training step about 15% faster here, with the same update rule.
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(
        params, lr=spec.learning_rate, weight_decay=spec.weight_decay, fused=fused or None
    )


def to_memory_format(batch: Batch, channels_last: bool) -> Batch:
    """``batch`` with its 4-D floating tensors (images) in channels-last layout, or as it is."""
    if not channels_last:
        return batch
    return {
        k: v.contiguous(memory_format=torch.channels_last)
        if isinstance(v, torch.Tensor) and v.dim() == 4 and v.is_floating_point()
        else v
        for k, v in batch.items()
    }


def set_memory_format(model: nn.Module, channels_last: bool) -> nn.Module:
    """``model`` with its 4-D parameters and buffers in channels-last layout, or contiguous again."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    # torch's stubs omit the memory_format keyword that Module.to accepts (and documents).
    moved: nn.Module = model.to(memory_format=fmt)  # type: ignore[call-overload]
    return moved


def _match_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Checkpoints hold contiguous tensors; give restored optimizer state its parameter's layout, as
    an uninterrupted run has it (``zeros_like`` keeps a channels-last parameter's strides)."""
    for p, st in optimizer.state.items():
        if not isinstance(p, torch.Tensor) or p.dim() != 4:
            continue
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and v.shape == p.shape:
                st[k] = v.contiguous(memory_format=torch.channels_last)


def train_loop(
    model: nn.Module,
    features: list[Batch],
    collate: Callable[[list[Batch]], Batch],
    loss_fn: LossFn,
    cfg: LoopConfig,
    resume: bool = False,
) -> TrainResult:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from transformers import get_scheduler

    spec = cfg.spec
    mixed = "bf16" if cfg.precision == "bf16" else "no"
    # accelerate's state is process-wide; a second run in this process (a search trial, a test) with
    # another precision would be refused, so drop the old settings but keep the process group.
    if AcceleratorState._shared_state and str(AcceleratorState().mixed_precision) != mixed:
        AcceleratorState._reset_state(reset_partial_state=False)
    check_supported()  # before accelerate tries to import DeepSpeed for a refused launch config
    accelerator = Accelerator(mixed_precision=mixed, **accelerator_kwargs())
    use_fsdp_on_cpu(accelerator, mixed)
    world = accelerator.num_processes  # >1 under `tuneproof run --processes`, torchrun or accelerate launch
    check_supported(accelerator)
    if world > 1 and cfg.augment is not None:
        raise TuneproofError("image augmentation runs in one process only in this version; drop --processes")
    if world > 1 and cfg.channels_last:
        raise TuneproofError("channels-last training runs in one process only in this version")
    if cfg.channels_last:
        model = set_memory_format(model, True)
    n = len(features)
    step_batch = spec.batch_size * spec.gradient_accumulation
    steps_per_epoch = math.ceil(n / step_batch)
    total_steps = spec.max_steps or math.ceil(spec.epochs * steps_per_epoch)
    eval_every = spec.eval_every_steps or steps_per_epoch
    ckpt_every = spec.checkpoint_every_steps or eval_every

    optimizer = build_optimizer(model, spec)
    sched_name = {"constant": "constant_with_warmup"}.get(spec.scheduler, spec.scheduler)
    scheduler = get_scheduler(
        sched_name,
        optimizer,
        num_warmup_steps=int(spec.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    model, optimizer = accelerator.prepare(model, optimizer)
    # Names from the unwrapped model, so checkpoints do not depend on the process count ("module." prefix).
    named = model.named_parameters() if world == 1 else accelerator.unwrap_model(model).named_parameters()
    trainable = {name: p for name, p in named if p.requires_grad}
    # Under FSDP the parameters are shards: full tensors are gathered and scattered collectively.
    sharded = is_sharded(accelerator)
    names = list(trainable)  # the optimizer's parameter order, which numbers its state
    raw_optimizer = getattr(optimizer, "optimizer", optimizer)  # torch's, under accelerate's wrapper
    if sharded and accelerator.is_main_process:
        from torch.distributed.fsdp import FSDPModule

        groups = sum(isinstance(m, FSDPModule) for m in model.modules())
        # Said out loud: a launch config that silently fell back to DDP would look the same otherwise.
        print(f"[train] FSDP2 over {world} processes: {groups} sharded modules", file=sys.stderr, flush=True)

    def load_weights(weights: dict[str, torch.Tensor]) -> None:
        if sharded:
            scatter_full_weights(model, weights)
            return
        with torch.no_grad():
            for name, tensor in weights.items():
                trainable[name].copy_(tensor)

    state: dict[str, Any] = {
        "step": 0,
        "best_metric": None,
        "best_step": None,
        "bad_evals": 0,
        "stopped_early": False,
        "log_history": [],
        "real_tokens": 0,
        "padded_tokens": 0,
        "seen": [],
    }
    resumed_from = None
    skipped: list[str] = []
    if resume:
        path, skipped = latest_complete(cfg.checkpoint_dir)
        if path is not None:
            ck = load_checkpoint(path)
            missing = set(trainable) - set(ck.model)
            if missing:
                raise TuneproofError(f"checkpoint {path} lacks trainable weights: {sorted(missing)[:5]}")
            load_weights(ck.model)
            if sharded:
                scatter_full_optimizer(model, raw_optimizer, ck.optimizer, names)
            else:
                optimizer.load_state_dict(ck.optimizer)
                if cfg.channels_last:
                    _match_layouts(raw_optimizer)
            scheduler.load_state_dict(ck.scheduler)
            torch.set_rng_state(ck.rng)
            state = ck.state
            resumed_from = str(path)
    else:
        torch.manual_seed(cfg.seed)

    def checkpoint() -> None:
        """Every rank calls it (under FSDP gathering is a collective); rank 0 writes."""
        if sharded:
            full = gather_full_state(model, raw_optimizer, names)
            if full is None:
                return
            weights, optimizer_state = full
        elif accelerator.is_main_process:
            weights, optimizer_state = dict(trainable), optimizer.state_dict()
        else:
            return
        contents = CheckpointContents(
            model=weights,
            optimizer=optimizer_state,
            scheduler=scheduler.state_dict(),
            rng=torch.get_rng_state(),
            state=state,
        )
        save_checkpoint(cfg.checkpoint_dir, state["step"], contents)
        protect = {state["best_step"]} if state["best_step"] is not None else set()
        rotate(cfg.checkpoint_dir, spec.keep_checkpoints, protect)

    def log(entry: dict[str, Any]) -> None:
        state["log_history"].append(entry)
        if cfg.on_log and accelerator.is_main_process:
            cfg.on_log(entry)

    def batches_from(step: int) -> Iterator[tuple[int, np.ndarray]]:
        epoch = step // steps_per_epoch
        offset = step % steps_per_epoch
        while True:
            for i, idx in enumerate(
                epoch_batches(n, cfg.lengths, step_batch, cfg.seed, epoch, spec.group_by_length)
            ):
                if i >= offset:
                    yield epoch, idx
            epoch, offset = epoch + 1, 0

    model.train()
    started = time.monotonic()
    start_step = state["step"]
    last_print = 0.0
    with _StopFlag() as stop:
        for epoch, idx in batches_from(state["step"]):
            if state["step"] >= total_steps or state["stopped_early"]:
                break
            ids = [cfg.row_ids[i] for i in idx]
            if world > 1:
                step_loss, total_count, real, padded = data_parallel_pass(
                    accelerator,
                    model,
                    loss_fn,
                    collate,
                    features,
                    idx,
                    spec.batch_size,
                    cfg.seed,
                    state["step"],
                )
                state["real_tokens"] += real
                state["padded_tokens"] += padded
                if not math.isfinite(step_loss):  # all-reduced, so every rank stops at the same step
                    raise TrainingDiverged(
                        f"non-finite loss ({step_loss}) at step {state['step'] + 1}; "
                        f"batch example ids: {', '.join(ids)}"
                    )
            else:
                micro = [idx[i : i + spec.batch_size] for i in range(0, len(idx), spec.batch_size)]
                # Normalise by the whole step's count, so accumulation never changes the loss or gradient.
                picked = [[features[i] for i in m] for m in micro]
                if cfg.augment is not None:
                    picked = [cfg.augment(p, epoch) for p in picked]
                prepared = [to_memory_format(collate(p), cfg.channels_last) for p in picked]
                total_count = sum(int(b.pop("_count")) for b in prepared)
                step_loss = 0.0
                for b in prepared:
                    b = {
                        k: v.to(accelerator.device) if isinstance(v, torch.Tensor) else v
                        for k, v in b.items()
                    }
                    state["real_tokens"] += int(b.pop("_real_tokens"))
                    state["padded_tokens"] += int(b.pop("_padded_tokens"))
                    with accelerator.autocast():
                        loss_sum, _ = loss_fn(model, b)
                    if not torch.isfinite(loss_sum):
                        raise TrainingDiverged(
                            f"non-finite loss ({loss_sum.item()}) at step {state['step'] + 1}; "
                            f"batch example ids: {', '.join(ids)}"
                        )
                    accelerator.backward(loss_sum / max(total_count, 1))
                    step_loss += loss_sum.item()
            # The global norm (over every rank's shards under FSDP), so all ranks stop at the same step.
            max_norm = spec.max_grad_norm if spec.max_grad_norm else float("inf")
            norm = global_grad_norm(accelerator, list(trainable.values()), max_norm)
            if not torch.isfinite(norm):
                raise TrainingDiverged(
                    f"non-finite gradient norm at step {state['step'] + 1}; "
                    f"batch example ids: {', '.join(ids)}"
                )
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["step"] += 1
            state["seen"].append(ids)
            step = state["step"]
            entry = {
                "step": step,
                "epoch": round(step / steps_per_epoch, 4),
                "loss": step_loss / max(total_count, 1),
                "learning_rate": scheduler.get_last_lr()[0],
                "grad_norm": float(norm),
            }
            log(entry)
            now = time.monotonic()
            if accelerator.is_main_process and (now - last_print > 5 or step == total_steps):
                last_print = now
                rate = (step - start_step) / max(now - started, 1e-9)
                print(
                    f"[train] step {step}/{total_steps} epoch {entry['epoch']:.2f} loss {entry['loss']:.4f} "
                    f"| {rate:.2f} steps/s | ETA {_format_eta((total_steps - step) / max(rate, 1e-9))}",
                    file=sys.stderr,
                    flush=True,
                )
            evaluated = False
            if cfg.eval_fn is not None and (step % eval_every == 0 or step == total_steps):
                model.eval()
                if world > 1:
                    metrics = evaluate_on_main(accelerator, model, cfg.eval_fn)
                else:
                    with accelerator.autocast():
                        metrics = cfg.eval_fn(model)
                model.train()
                evaluated = True
                log({"step": step, "epoch": entry["epoch"], **{f"eval_{k}": v for k, v in metrics.items()}})
                if cfg.selection_metric is not None:
                    value = metrics[cfg.selection_metric]
                    es = spec.early_stopping
                    if _improved(
                        value, state["best_metric"], cfg.selection_metric, es.min_delta if es else 0.0
                    ):
                        state.update(best_metric=value, best_step=step, bad_evals=0)
                    else:
                        state["bad_evals"] += 1
                        if es is not None and state["bad_evals"] >= es.patience:
                            state["stopped_early"] = True
            stopping = stop.signal is not None
            if world > 1:  # a signal may reach the ranks at different steps: stop together
                stopping = all_reduce_sum([float(stopping)])[0] > 0
            if evaluated or step % ckpt_every == 0 or stopping:
                checkpoint()
                if world > 1:
                    accelerator.wait_for_everyone()
            if stopping:
                raise Interrupted(
                    f"stopped by signal {stop.signal} after step {step}; "
                    f"checkpoint saved in {cfg.checkpoint_dir}"
                )
    if state["best_step"] is not None and state["best_step"] != state["step"]:
        load_weights(load_checkpoint(cfg.checkpoint_dir / f"checkpoint-{state['best_step']}").model)
    full_state = gather_full_model(model) if sharded else None
    if world > 1:  # rank 0 may delete the checkpoints once every rank has loaded the best one
        accelerator.wait_for_everyone()
    return TrainResult(
        log_history=state["log_history"],
        steps=state["step"],
        best_step=state["best_step"],
        best_metric=state["best_metric"],
        stopped_early=state["stopped_early"],
        resumed_from=resumed_from,
        skipped_checkpoints=skipped,
        real_tokens=state["real_tokens"],
        padded_tokens=state["padded_tokens"],
        train_seconds=time.monotonic() - started,
        seen_row_ids=state["seen"],
        full_state=full_state,
    )
