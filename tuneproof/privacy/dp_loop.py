"""DP-SGD training with Opacus: per-example clipping and Gaussian noise (``PrivacyEngine``), Poisson
sampling of each step's examples (Opacus's ``UniformWithReplacementSampler``), and the accountant's
epsilon for the steps actually taken.

A separate loop from ``tuneproof.train.loop`` rather than a branch in it: DP-SGD changes what a step
is (a Poisson sample, not a slice of a shuffled epoch), forbids what the main loop offers (gradient
accumulation across micro-batches, model selection on validation, data parallelism), and the main
loop's results must stay bit-identical. What it shares is the checkpoint format: resume restores
weights, optimizer, scheduler, RNG and the accountant's history, so the epsilon reported covers
the whole run.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from tuneproof.errors import Interrupted, Problem, ProtocolError, TrainingDiverged
from tuneproof.privacy.spec import DpSgdSpec
from tuneproof.train.checkpoint import (
    CheckpointContents,
    latest_complete,
    load_checkpoint,
    rotate,
    save_checkpoint,
)
from tuneproof.train.loop import (
    Batch,
    LoopConfig,
    LossFn,
    TrainResult,
    _format_eta,
    _StopFlag,
    build_optimizer,
)


def check_dp_supported(model: nn.Module, cfg: LoopConfig, world_size: int, packed: bool = False) -> None:
    """Every reason this run cannot be trained with DP-SGD, as one protocol error, before training.

    ``packed``: the training rows pack several examples each (``sft.packing``)."""
    spec = cfg.spec
    problems: list[Problem] = []
    if spec.gradient_checkpointing:
        # Recomputing the forward pass in backward runs Opacus's activation hooks again, so the
        # per-example gradients of all but the last layer are never formed ("Per sample gradient is
        # not initialized"). Off by default under DP; an explicit true is refused.
        problems.append(
            Problem("train.gradient_checkpointing", "must be false with privacy.dp_sgd (Opacus's hooks)")
        )
    if packed:
        problems.append(
            Problem(
                "sft.packing",
                "must be false with privacy.dp_sgd: the guarantee is per training row, and a packed row "
                "holds several examples whose packing shifts when one is removed",
            )
        )
    if spec.gradient_accumulation != 1:
        problems.append(Problem("train.gradient_accumulation", "must be 1 with privacy.dp_sgd"))
    if spec.early_stopping is not None:
        problems.append(
            Problem("train.early_stopping", "not with privacy.dp_sgd (the final weights are the DP ones)")
        )
    if cfg.precision != "fp32":
        problems.append(Problem("train.precision", "privacy.dp_sgd trains in fp32 only"))
    if world_size > 1:
        problems.append(Problem("privacy.dp_sgd", "runs in one process only"))
    from opacus import GradSampleModule
    from opacus.validators import ModuleValidator

    was_training = model.training
    model.train()
    # ModuleValidator: layers DP-SGD forbids (BatchNorm mixes examples); GradSampleModule: trainable
    # layers whose per-example gradients Opacus cannot form (layers with buffers).
    errors = [*ModuleValidator.validate(model, strict=False), *GradSampleModule.validate(model, strict=False)]
    for err in errors:
        problems.append(Problem("privacy.dp_sgd", f"Opacus cannot train this model: {err}"))
    model.train(was_training)
    if problems:
        raise ProtocolError(problems)


def dp_train_loop(
    model: nn.Module,
    features: list[Batch],
    collate: Callable[[list[Batch]], Batch],
    loss_fn: LossFn,
    cfg: LoopConfig,
    dp: DpSgdSpec,
    resume: bool = False,
) -> tuple[TrainResult, dict[str, Any]]:
    """Train ``model`` in place with DP-SGD; the result and the privacy record (epsilon, delta,
    noise multiplier, clipping norm, sampling rate, steps, accountant)."""
    from opacus import PrivacyEngine
    from opacus.accountants.utils import get_noise_multiplier
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler
    from transformers import get_scheduler

    spec = cfg.spec
    n = len(features)
    # Opacus takes the sampling rate as 1 / (batches per epoch): the expected batch is batch_size.
    steps_per_epoch = math.ceil(n / spec.batch_size)
    sample_rate = 1.0 / steps_per_epoch
    total_steps = spec.max_steps or math.ceil(spec.epochs * steps_per_epoch)
    # Transformers feed one row of position ids for the whole batch, so Opacus's per-example gradient
    # of a position embedding has batch size 1 and cannot be clipped per example: those tables stay
    # at their pretrained values under DP (the record lists them).
    frozen = [
        name for name, p in model.named_parameters() if p.requires_grad and "position_embeddings" in name
    ]
    for name, p in model.named_parameters():
        if name in frozen:
            p.requires_grad = False
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    optimizer = build_optimizer(model, spec)
    scheduler = get_scheduler(
        {"constant": "constant_with_warmup"}.get(spec.scheduler, spec.scheduler),
        optimizer,
        num_warmup_steps=int(spec.warmup_ratio * total_steps),
        num_training_steps=total_steps,
    )
    state: dict[str, Any] = {"step": 0, "log_history": [], "seen": [], "noise_multiplier": None}
    resumed_from: str | None = None
    skipped: list[str] = []
    history: list[tuple[float, float, int]] = []
    ck = None
    if resume:
        path, skipped = latest_complete(cfg.checkpoint_dir)
        if path is not None:
            ck = load_checkpoint(path)
            resumed_from = str(path)
            state = ck.state
            history = [(float(a), float(b), int(c)) for a, b, c in state.get("accountant_history", [])]
    if ck is None:
        torch.manual_seed(cfg.seed)
    if state["noise_multiplier"] is None:
        state["noise_multiplier"] = dp.noise_multiplier or get_noise_multiplier(
            target_epsilon=dp.target_epsilon,
            target_delta=dp.delta,
            sample_rate=sample_rate,
            steps=total_steps,
            accountant=dp.accountant,
        )
    sigma = float(state["noise_multiplier"])
    model.train()  # Opacus validates the module in training mode (from_pretrained leaves it in eval)
    engine = PrivacyEngine(accountant=dp.accountant)
    # The loader only tells Opacus the sampling rate; batches are drawn below, one Poisson sample a step.
    loader: torch.utils.data.DataLoader[Any] = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.arange(n)), batch_size=spec.batch_size
    )
    private_model, dp_optimizer, _ = engine.make_private(
        module=model,
        optimizer=optimizer,
        data_loader=loader,
        noise_multiplier=sigma,
        max_grad_norm=dp.max_grad_norm,
        loss_reduction="sum",  # the task's loss is a sum over the batch: per-example grads as they are
        poisson_sampling=False,
    )
    # ... and the noisy sum of clipped gradients is then averaged over the expected batch size.
    dp_optimizer.loss_reduction = "mean"
    if ck is not None:
        with torch.no_grad():
            for name, tensor in ck.model.items():
                trainable[name].copy_(tensor)
        optimizer.load_state_dict(ck.optimizer)
        scheduler.load_state_dict(ck.scheduler)
        torch.set_rng_state(ck.rng)
        engine.accountant.history = list(history)

    def checkpoint() -> None:
        state["accountant_history"] = [list(h) for h in engine.accountant.history]
        contents = CheckpointContents(
            model={k: v.detach() for k, v in trainable.items()},
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(),
            rng=torch.get_rng_state(),
            state=state,
        )
        save_checkpoint(cfg.checkpoint_dir, state["step"], contents)
        rotate(cfg.checkpoint_dir, spec.keep_checkpoints, set())

    def _dp_step(state: dict[str, Any]) -> None:
        """One DP-SGD step on a fresh Poisson sample; the step and its epsilon are logged."""
        step = state["step"]
        # The sample of step k is a pure function of (seed, k), so a resumed run draws what it would have.
        gen = torch.Generator().manual_seed(int(np.random.default_rng([cfg.seed, step]).integers(2**62)))
        sampler = UniformWithReplacementSampler(
            num_samples=n, sample_rate=sample_rate, generator=gen, steps=1
        )
        idx = list(next(iter(sampler)))
        ids = [cfg.row_ids[i] for i in idx]
        step_loss, count = 0.0, 0
        if idx:
            batch = collate([features[i] for i in idx])
            count = int(batch.pop("_count"))
            for key in [k for k in batch if k.startswith("_")]:
                batch.pop(key)
            loss_sum, _ = loss_fn(private_model, batch)
            if not torch.isfinite(loss_sum):
                raise TrainingDiverged(
                    f"non-finite loss ({loss_sum.item()}) at step {step + 1}; "
                    f"batch example ids: {', '.join(ids)}"
                )
            loss_sum.backward()
            step_loss = float(loss_sum.item())
        else:
            # An empty Poisson sample is still a step: the update is noise alone, and it is accounted.
            for p in trainable.values():
                p.grad_sample = torch.zeros((1, *p.shape), dtype=p.dtype)  # type: ignore[attr-defined]
        dp_optimizer.step()
        scheduler.step()
        dp_optimizer.zero_grad(set_to_none=True)
        state["step"] += 1
        state["seen"].append(ids)
        entry = {
            "step": state["step"],
            "epoch": round(state["step"] / steps_per_epoch, 4),
            "loss": step_loss / max(count, 1),
            "learning_rate": scheduler.get_last_lr()[0],
            "batch_examples": len(idx),
            "epsilon": engine.get_epsilon(dp.delta),
        }
        state["log_history"].append(entry)
        if cfg.on_log is not None:
            cfg.on_log(entry)

    ckpt_every = spec.checkpoint_every_steps or steps_per_epoch
    private_model.train()
    started = time.monotonic()
    start_step, last_print = state["step"], 0.0
    # SIGINT/SIGTERM end the run after the current step, with a checkpoint: the steps it took are
    # in the accountant's history, so a resumed run's epsilon covers them.
    with _StopFlag() as stop:
        while state["step"] < total_steps:
            _dp_step(state)
            now = time.monotonic()
            if now - last_print > 5 or state["step"] == total_steps:
                last_print = now
                rate = (state["step"] - start_step) / max(now - started, 1e-9)
                entry = state["log_history"][-1]
                print(
                    f"[train] step {state['step']}/{total_steps} epoch {entry['epoch']:.2f} "
                    f"loss {entry['loss']:.4f} | {rate:.2f} steps/s | "
                    f"ETA {_format_eta((total_steps - state['step']) / max(rate, 1e-9))}",
                    file=sys.stderr,
                    flush=True,
                )
            stopping = stop.signal is not None
            if stopping or state["step"] % ckpt_every == 0 or state["step"] == total_steps:
                checkpoint()
            if stopping:
                private_model._close()
                raise Interrupted(
                    f"stopped by signal {stop.signal} after step {state['step']}; "
                    f"checkpoint saved in {cfg.checkpoint_dir} (epsilon so far "
                    f"{engine.get_epsilon(dp.delta):.4g})"
                )
    private_model._close()  # removes Opacus's hooks; `model` is trained in place
    record = {
        "epsilon": float(engine.get_epsilon(dp.delta)),
        "delta": dp.delta,
        "noise_multiplier": sigma,
        "max_grad_norm": dp.max_grad_norm,
        "sample_rate": sample_rate,
        "expected_batch_size": spec.batch_size,
        "steps": state["step"],
        "accountant": dp.accountant,
        "target_epsilon": dp.target_epsilon,
        "sampling": "Poisson (each example joins each step independently with the sampling rate)",
        "accountant_history": [list(h) for h in engine.accountant.history],
        "frozen_for_dp": frozen,
    }
    result = TrainResult(
        log_history=state["log_history"],
        steps=state["step"],
        best_step=None,
        best_metric=None,
        stopped_early=False,
        resumed_from=resumed_from,
        skipped_checkpoints=skipped,
        real_tokens=0,
        padded_tokens=0,
        train_seconds=time.monotonic() - started,
        seen_row_ids=state["seen"],
    )
    return result, record
