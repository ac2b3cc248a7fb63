"""What every arm's subprocess shares: thread pinning, memory readings, the model's FLOPs shape."""

from __future__ import annotations

import os
import resource
from typing import Any

from benchmarks.stats import Shape


def setup(threads: int) -> None:
    """Same thread count for every arm; libraries quiet so the logs show the benchmark's lines."""
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def rss_mib() -> float:
    """Resident memory now (from /proc, so no psutil is needed)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """High-water mark of this process's resident memory (Linux reports ru_maxrss in KiB).

    Each arm runs in a fresh subprocess, so this is that arm's own peak, imports included.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def shape_of(model: Any) -> Shape:
    """Non-embedding parameters (each counted once, tied weights too), layers and hidden size.

    Embedding tables are lookups, not matmuls, so they are left out of the 6N term.
    """
    seen: set[int] = set()
    n = 0
    for name, p in model.named_parameters():
        if id(p) in seen or "embed" in name:
            continue
        seen.add(id(p))
        n += p.numel()
    cfg = model.config
    return Shape(n, int(cfg.num_hidden_layers), int(cfg.hidden_size))
