"""Data-parallel training across processes and machines: rank helpers, step sharding, a local launcher.

tuneproof does not own a process launcher for clusters: `torchrun` and `accelerate launch` set
``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR`` and every rank runs ``tuneproof run`` as
usual. :func:`launch_local` is only the one-machine shortcut behind ``tuneproof run --processes N``.

The protocol never says how many processes run it: ``train.batch_size x gradient_accumulation`` is
the *global* optimizer-step batch, and each rank takes its share of every step (see
:func:`shard_step`), so 1 process and N processes see the same examples in the same steps and
reach the same weights up to float summation order.
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


def check_supported(accelerator: Any) -> None:
    """Refuse sharded engines the loop cannot checkpoint yet, instead of training with wrong state.

    The loop saves and restores the trainable weights and optimizer state as full tensors on rank 0;
    under FSDP or DeepSpeed ZeRO those are shards, so a checkpoint would be incomplete.
    """
    kind = str(getattr(accelerator, "distributed_type", "")).rsplit(".", 1)[-1]
    if kind in ("FSDP", "DEEPSPEED", "MEGATRON_LM"):
        from tuneproof.errors import TuneproofError

        raise TuneproofError(
            f"{kind} is not supported yet: tuneproof trains data-parallel with DDP (one full copy of the "
            "model per process); launch without an FSDP/DeepSpeed accelerate config"
        )


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
    ranks because DDP averages gradients over ranks instead of summing them.
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
        # Gradients are all-reduced once per step, on the last micro-batch (same count on every rank).
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
    """Validation on rank 0 with the unwrapped model, shared with every rank.

    Every rank must take the same early-stopping and best-checkpoint decisions, so they use rank 0's
    numbers rather than their own; the unwrapped model runs no collectives, so rank 0 can run alone.
    """
    metrics = None
    if accelerator.is_main_process:
        with accelerator.autocast():
            metrics = eval_fn(accelerator.unwrap_model(model))
    result: dict[str, float] = broadcast_object(metrics)
    return result
