"""Data-parallel training across processes and machines: rank helpers, step sharding, a local launcher.

tuneproof does not own a process launcher for clusters: `torchrun` and `accelerate launch` set
``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR`` and every rank runs ``tuneproof run`` as
usual. :func:`launch_local` is only the one-machine shortcut behind ``tuneproof run --processes N``.

The protocol never says how many processes run it: ``train.batch_size x gradient_accumulation`` is
the *global* optimizer-step batch, and each rank takes its share of every step (see
:func:`shard_step`), so 1 process and N processes see the same examples in the same steps and
reach the same weights up to float summation order.

Each rank holds a full copy of the model (DDP), or, when the launch asks for FSDP
(``ACCELERATE_USE_FSDP``, set by ``accelerate launch --use_fsdp`` and by ``tuneproof run --fsdp``),
a shard of every parameter (accelerate's FSDP2); the step, the loss normalisation and the checkpoint
format are the same in both.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def is_main() -> bool:
    return rank() == 0


def accelerator_kwargs() -> dict[str, Any]:
    """Extra ``Accelerator`` arguments for this process; empty for a single process.

    accelerate only sets up a gloo process group on CPU when told ``cpu=True``; without it a
    torchrun-launched CPU job silently trains N independent copies.
    """
    if world_size() <= 1:
        return {}
    import torch

    return {} if torch.cuda.is_available() else {"cpu": True}


# What `accelerate launch --use_fsdp --fsdp_version 2` (or an accelerate config file) exports, and
# what `tuneproof run --fsdp` sets for its local ranks: the same variables, so both paths agree.
# Transformer-layer wrapping shards layer by layer (a model's `_no_split_modules`, or the classes in
# FSDP_TRANSFORMER_CLS_TO_WRAP); without it only the root is sharded and a whole model is gathered
# at once. Values already in the environment win, except the switch itself.
FSDP_ENV = {
    "FSDP_VERSION": "2",
    "FSDP_AUTO_WRAP_POLICY": "TRANSFORMER_BASED_WRAP",
    "FSDP_RESHARD_AFTER_FORWARD": "true",
}
_REFUSED = {"ACCELERATE_USE_DEEPSPEED": "DEEPSPEED", "ACCELERATE_USE_MEGATRON_LM": "MEGATRON_LM"}


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes", "y", "on")


def fsdp_requested() -> bool:
    return _flag("ACCELERATE_USE_FSDP")


def fsdp_launch_env() -> dict[str, str]:
    """The environment of a rank launched by `tuneproof run --fsdp`."""
    chosen = {k: os.environ[k] for k in FSDP_ENV if k in os.environ}
    return {**FSDP_ENV, **chosen, "ACCELERATE_USE_FSDP": "true"}


def mode() -> str:
    """How this run trains, for the manifest: ``single``, ``ddp`` or ``fsdp``."""
    if world_size() <= 1:
        return "single"
    return "fsdp" if fsdp_requested() else "ddp"


def check_supported(accelerator: Any = None) -> None:
    """Refuse engines the loop cannot checkpoint, instead of training with incomplete state.

    DeepSpeed ZeRO and Megatron-LM keep their own partitioned optimizer state, which the loop's
    full-tensor checkpoints cannot save or restore. FSDP is supported as FSDP2 (``fully_shard``)
    only: its parameters are DTensors that `torch.distributed.checkpoint.state_dict` gathers to full
    tensors; FSDP1 flattens parameters and would need another state-dict path.
    """
    from tuneproof.errors import TuneproofError

    kind = str(getattr(accelerator, "distributed_type", "")).rsplit(".", 1)[-1]
    refused = [v for k, v in _REFUSED.items() if _flag(k)] + ([kind] if kind in _REFUSED.values() else [])
    if refused:
        raise TuneproofError(
            f"{refused[0]} is not supported: tuneproof trains data-parallel with DDP or FSDP2 "
            "(`tuneproof run --processes N [--fsdp]`); launch without a DeepSpeed/Megatron-LM "
            "accelerate config"
        )
    if fsdp_requested() and _flag("FSDP_CPU_RAM_EFFICIENT_LOADING"):
        # transformers then loads real weights on local rank 0 only, for accelerate to broadcast;
        # tuneproof builds and initialises the model on every rank, and this combination desynchronised
        # the ranks' collectives here (a gloo size mismatch after the first step).
        raise TuneproofError(
            "FSDP with cpu_ram_efficient_loading is not supported: tuneproof builds the model on every "
            "rank; launch with `--fsdp_cpu_ram_efficient_loading false` "
            "(FSDP_CPU_RAM_EFFICIENT_LOADING=false)"
        )
    version = os.environ.get("FSDP_VERSION", "1")
    fsdp1 = kind == "FSDP" and not getattr(accelerator, "is_fsdp2", False)
    if fsdp1 or (fsdp_requested() and version != "2"):
        raise TuneproofError(
            f"FSDP version {version} is not supported: tuneproof shards with FSDP2; launch with "
            "`accelerate launch --use_fsdp --fsdp_version 2`, FSDP_VERSION=2, or `tuneproof run --fsdp`"
        )
    if accelerator is not None and fsdp_requested() and getattr(accelerator, "num_processes", 1) > 1:
        if kind != "FSDP":  # the manifest says "fsdp": never let it be a silent DDP run
            raise TuneproofError(
                f"FSDP was requested but accelerate set up {kind or 'no'} distributed training"
            )


def use_fsdp_on_cpu(accelerator: Any, mixed_precision: str) -> None:
    """Select accelerate's FSDP2 for CPU ranks (gloo) when the launch asked for FSDP.

    accelerate 1.15 selects FSDP only for accelerator devices: `AcceleratorState.__init__`
    (accelerate/state.py, the `distributed_type in [MULTI_GPU, ...]` branch) leaves MULTI_CPU out, so
    on CPU an FSDP launch config silently trains DDP. torch's `fully_shard` itself works on CPU with
    gloo, so this switches the state the way that branch does on GPUs (the same plugin from the same
    FSDP_* variables, the same mixed-precision call) and `Accelerator.prepare` then shards through
    accelerate's own FSDP2 path. On GPUs accelerate selects FSDP itself and this does nothing.
    """
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    state = accelerator.state
    if not fsdp_requested() or state.distributed_type != DistributedType.MULTI_CPU:
        return
    plugin = FullyShardedDataParallelPlugin()  # reads FSDP_* from the environment
    if mixed_precision != "no":
        plugin.set_mixed_precision(mixed_precision)
    state.fsdp_plugin = plugin
    state.distributed_type = DistributedType.FSDP
    # As that branch ends: every later `AcceleratorState()` copies PartialState's fields over its own.
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP


def is_sharded(accelerator: Any) -> bool:
    """True when parameters are FSDP shards (DTensors), so full tensors need a collective gather."""
    return bool(getattr(accelerator, "is_fsdp2", False))


def global_grad_norm(accelerator: Any, params: list[Any], max_norm: float) -> Any:
    """Clip gradients and return the total norm over every rank's shards, as a plain tensor.

    `accelerator.clip_grad_norm_` is DTensor-aware under FSDP2 (the norm of sharded gradients is
    all-reduced, so every rank clips by and checks the same global norm); with one process or DDP it
    is `torch.nn.utils.clip_grad_norm_`, where every rank holds the full averaged gradients.
    """
    from torch.distributed.tensor import DTensor

    norm = accelerator.clip_grad_norm_(params, max_norm)
    return norm.full_tensor() if isinstance(norm, DTensor) else norm


def init_process_group() -> None:
    """Join the process group early (before data preparation), so ranks can agree on the run folder."""
    if world_size() <= 1:
        return
    from accelerate import PartialState

    PartialState(**accelerator_kwargs())


def barrier() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (a run folder path, validation metrics)."""
    if world_size() <= 1:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sum over ranks, in float64 so token counts and loss sums stay exact."""
    if world_size() <= 1:
        return [float(v) for v in values]
    import torch
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else None
    t = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


@contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (filling caches on disk), then the others read what it wrote."""
    if world_size() <= 1:
        yield
        return
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def others_wait() -> None:
    """Ranks other than 0 wait here until rank 0 reaches :func:`main_done` (it fills caches first)."""
    if world_size() > 1 and not is_main():
        barrier()


def main_done() -> None:
    if world_size() > 1 and is_main():
        barrier()


def finish() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def shard_step(
    idx: np.ndarray, batch_size: int, world: int, rank_: int
) -> tuple[list[np.ndarray], list[bool]]:
    """This rank's micro-batches of one optimizer step, and which of them carry real examples.

    The step's examples are dealt out round-robin (length-grouped steps stay balanced), and every
    rank gets the same number of micro-batches, because DDP needs the same number of backward passes
    on every rank. A rank left without examples for a micro-batch (a short last step) runs a stand-in
    example with weight zero, marked False.
    """
    shard = idx[rank_::world]
    micro = max(1, math.ceil(batch_size / world))
    largest = math.ceil(len(idx) / world)
    n_micro = max(1, math.ceil(largest / micro))
    pieces = [shard[i * micro : (i + 1) * micro] for i in range(n_micro)]
    live = [len(p) > 0 for p in pieces]
    return [p if len(p) else idx[:1] for p in pieces], live


def step_seed(seed: int, step: int, rank_: int) -> int:
    """Seed for dropout on one rank at one step: a function of the step, so resume needs no RNG state."""
    return int(np.random.SeedSequence([seed, step, rank_]).generate_state(1)[0])


# -- local launcher -------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch_local(argv: Sequence[str], processes: int, grace_s: float = 30.0) -> int:
    """Run ``python -m tuneproof *argv`` as ``processes`` ranks on this machine; rank 0's exit code.

    Hand-written rather than torchrun so the caller gets rank 0's own exit code (torchrun reports
    any failure as 1, losing "gate failed" vs "diverged"), and so a failed rank stops the others
    instead of leaving them blocked in a collective.
    """
    cores = os.cpu_count() or 1
    threads = os.environ.get("TUNEPROOF_THREADS") or str(max(1, cores // processes))
    base = {
        **os.environ,
        "WORLD_SIZE": str(processes),
        "LOCAL_WORLD_SIZE": str(processes),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        "TUNEPROOF_THREADS": threads,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", threads),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tuneproof", *argv],
            env={**base, "RANK": str(r), "LOCAL_RANK": str(r)},
        )
        for r in range(processes)
    ]
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [c for c in codes if c not in (None, 0)]
            if all(c is not None for c in codes):
                return int(codes[0] or 0)
            if failed:
                # The others may be waiting in a collective for the dead rank: give them a grace
                # period (rank 0 may still be writing the failure into the run folder), then stop them.
                deadline = time.monotonic() + grace_s
                while time.monotonic() < deadline and any(p.poll() is None for p in procs):
                    time.sleep(0.2)
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                codes = [p.wait() for p in procs]
                return int(codes[0] or failed[0])
            time.sleep(0.2)
    except KeyboardInterrupt:
        # The terminal sent SIGINT to every rank too; they save a checkpoint and stop together.
        for p in procs:
            try:
                p.wait(timeout=120)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGKILL)
        return 130


# -- the parts of one optimizer step that differ with several ranks -------------------------------


def data_parallel_pass(
    accelerator: Any,
    model: Any,
    loss_fn: Any,
    collate: Any,
    features: list[dict[str, Any]],
    idx: np.ndarray,
    batch_size: int,
    seed: int,
    step: int,
) -> tuple[float, int, int, int]:
    """Forward and backward of this rank's share of one optimizer step.

    Returns the step's global (loss sum, loss count, real tokens, padded tokens). Gradients end up
    equal to those of one process on the whole step: each rank's loss is divided by the *global*
    count (an all-reduce, so token-level losses normalise exactly), and multiplied by the number of
    ranks because DDP averages gradients over ranks instead of summing them (FSDP2's reduce-scatter
    averages the same way: `test_fsdp.py` checks the gradient norms of 1 and 2 processes agree).
    Under FSDP, `no_sync` keeps unsharded gradients until the last micro-batch, as DDP does.
    """
    import contextlib

    import torch

    world, me = accelerator.num_processes, accelerator.process_index
    torch.manual_seed(step_seed(seed, step, me))
    micro, live = shard_step(idx, batch_size, world, me)
    batches = [collate([features[i] for i in m]) for m in micro]
    local = [0.0, 0.0, 0.0]
    for b, ok in zip(batches, live, strict=True):
        counts = (int(b.pop("_count")), int(b.pop("_real_tokens")), int(b.pop("_padded_tokens")))
        if ok:
            local = [a + c for a, c in zip(local, counts, strict=True)]
    count, real, padded = all_reduce_sum(local)
    loss_total = 0.0
    for j, (b, ok) in enumerate(zip(batches, live, strict=True)):
        b = {k: v.to(accelerator.device) if isinstance(v, torch.Tensor) else v for k, v in b.items()}
        # Gradients are reduced once per step, on the last micro-batch (same count on every rank).
        sync = contextlib.nullcontext() if j == len(batches) - 1 else accelerator.no_sync(model)
        with sync:
            with accelerator.autocast():
                loss_sum, _ = loss_fn(model, b)
            accelerator.backward(loss_sum * (world / max(count, 1.0) if ok else 0.0))
        if ok:
            loss_total += loss_sum.item()
    (loss_total,) = all_reduce_sum([loss_total])
    return loss_total, int(count), int(real), int(padded)


def evaluate_on_main(accelerator: Any, model: Any, eval_fn: Any) -> dict[str, float]:
    """Validation numbers from rank 0, shared with every rank.

    Every rank must take the same early-stopping and best-checkpoint decisions, so they use rank 0's
    numbers rather than their own. Under DDP rank 0 runs alone on the unwrapped model (it runs no
    collectives). Under FSDP no rank holds the whole model: every forward all-gathers each layer, so
    every rank runs the same validation on the sharded model (the same batches, so the same number
    of collectives) and rank 0's numbers are kept.
    """
    metrics = None
    if is_sharded(accelerator):
        with accelerator.autocast():
            metrics = eval_fn(model)
    elif accelerator.is_main_process:
        with accelerator.autocast():
            metrics = eval_fn(accelerator.unwrap_model(model))
    result: dict[str, float] = broadcast_object(metrics)
    return result
