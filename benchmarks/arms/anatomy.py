"""Where a tuneproof classification step spends its time: the measured answer to "why not 100% MFU".

Runs tuneproof's classification throughput configuration under ``torch.profiler`` for a few steady
steps (after warm-up steps whose one-time costs are left out) and splits the operators' own CPU
time into:

* matmul: ``mm``/``addmm``/``bmm``/``baddbmm`` (forward and backward GEMMs, attention's batched ones);
* dropout RNG: ``bernoulli_``/``uniform_`` (the masks of the model's dropout layers, drawn by the
  CPU generator);
* optimizer: everything inside ``Optimizer.step`` and ``Optimizer.zero_grad`` (inclusive time);
* other: the rest (element-wise ops, layer norms, softmax, embedding backward, autocast casts,
  gradient clipping, Python).

It also gives the GEMMs' own rate: the matmul FLOPs the model performed on the *padded* tokens
(what the kernels computed) over the matmul time, so it can be set against the measured peak.
Profiling adds a little overhead per operator, so shares are of profiled time, not wall time.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from benchmarks.arms.classification import tuneproof_protocol
from benchmarks.arms.common import setup, shape_of
from benchmarks.data import REPO, rt_split
from benchmarks.stats import train_flops

MATMUL = {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"}
RNG = {"aten::bernoulli_", "aten::uniform_"}
OPTIMIZER_PREFIXES = ("Optimizer.step", "Optimizer.zero_grad")


def split_times(events: list[tuple[str, float, float]]) -> dict[str, float]:
    """(name, self us, inclusive us) per operator -> seconds per category (they add up to the total)."""
    total = sum(s for _, s, _ in events)
    matmul = sum(s for n, s, _ in events if n in MATMUL)
    rng = sum(s for n, s, _ in events if n in RNG)
    optimizer = sum(inc for n, _, inc in events if n.startswith(OPTIMIZER_PREFIXES))
    other = total - matmul - rng - optimizer
    return {
        k: v / 1e6
        for k, v in dict(
            total=total, matmul=matmul, dropout_rng=rng, optimizer=optimizer, other=other
        ).items()
    }


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    setup(cfg["threads"])
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    from tuneproof.tasks.registry import get_task
    from tuneproof.train.fit import fit
    from tuneproof.train.model_source import load_tokenizer, resolve_model
    from tuneproof.train.precision import choose_precision

    warmup, active = int(cfg["warmup_steps"]), int(cfg["active_steps"])
    protocol = tuneproof_protocol({**cfg, "mode": "throughput", "max_steps": warmup + active + 1})
    task = get_task(protocol)
    precision, _ = choose_precision(protocol.train.precision)
    ref = resolve_model(protocol.model, REPO / "examples")
    tokenizer = load_tokenizer(ref)
    train_df, _ = rt_split(cfg["n_train"], cfg["n_test"], cfg["seed"])
    features = {"train": task.features(train_df, tokenizer, Path(cfg["cache_dir"]))}
    lengths = {str(f["row_id"]): len(f["input_ids"]) for f in features["train"]}
    events: list[tuple[str, float, float]] = []

    def collect(p: Any) -> None:  # called once, when the active window closes
        events.extend(
            (e.key, float(e.self_cpu_time_total), float(e.cpu_time_total)) for e in p.key_averages()
        )

    prof = profile(
        activities=[ProfilerActivity.CPU],
        schedule=schedule(wait=0, warmup=warmup, active=active, repeat=1),
        on_trace_ready=collect,
    )

    def on_log(entry: dict[str, Any]) -> None:
        if not any(k.startswith("eval_") for k in entry):
            prof.step()  # one profiler step per optimizer step

    with tempfile.TemporaryDirectory(prefix="bench-anatomy-") as tmp, prof:
        result = fit(task, protocol, ref, tokenizer, features, Path(tmp) / "ck", precision, on_log=on_log)
    times = split_times(events)
    # Steps warmup+1 .. warmup+active were profiled; each is one micro-batch padded to its longest row.
    profiled = result.train.seen_row_ids[warmup : warmup + active]
    shape = shape_of(result.model)
    padded = [max(lengths[r] for r in ids) for ids in profiled for _ in ids]
    real = [lengths[r] for ids in profiled for r in ids]
    flops_padded = train_flops(shape, padded)
    return {
        "arm": "tuneproof",
        "precision": precision,
        "torch_threads": torch.get_num_threads(),
        "profiled_steps": len(profiled),
        "seconds": times,
        "shares": {k: v / times["total"] for k, v in times.items() if k != "total"},
        "model_flops_real": train_flops(shape, real),
        "model_flops_padded": flops_padded,
        "gemm_gflops_per_s": flops_padded / times["matmul"] / 1e9 if times["matmul"] else None,
    }
