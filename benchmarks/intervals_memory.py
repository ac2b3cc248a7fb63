"""Peak memory of a test split's bootstrap intervals: the index matrix held whole, or drawn in blocks.

Each arm runs in its own subprocess (a clean peak resident set) on the same synthetic test split
(``--rows`` rows, two labels, a 0.8-accurate model) and scores accuracy and macro-F1 with the
evaluation's default 1000 resamples:

- ``whole``: ``bootstrap_indices`` (the ``[samples, n]`` int32 matrix, as every evaluation held it
  before ``RowResamples``) handed to ``replicates_many``;
- ``blocked``: ``row_resamples``, the same draw made block by block during the pass.

Both arms print their intervals, which must be equal (the same stream); the run fails otherwise.

    python -m benchmarks.intervals_memory --rows 1000000 --out benchmarks/results/intervals_memory.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _arm(kind: str, rows: int, samples: int) -> dict[str, Any]:
    from tuneproof.evaluate.bootstrap import (
        bootstrap_indices,
        point_estimate,
        replicates_many,
        row_resamples,
        summarize,
    )
    from tuneproof.evaluate.metrics import accuracy_stat, macro_stat

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, rows)
    pred = np.where(rng.random(rows) < 0.8, y, 1 - y)
    stats = {
        "accuracy": accuracy_stat((y == pred).astype(np.float64)),
        "macro_f1": macro_stat(y * 2 + pred, 2, "f1"),
    }
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    idx = bootstrap_indices(rows, samples, 7) if kind == "whole" else row_resamples(rows, samples, 7)
    reps = replicates_many(stats, idx)
    out = {m: summarize(point_estimate(s, rows), reps[m], 0.95) for m, s in stats.items()}
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {
        "arm": kind,
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(peak / 1024, 1),
        "peak_over_data_mb": round((peak - base) / 1024, 1),
        "intervals": out,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--arm", choices=["whole", "blocked"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.arm:
        print(json.dumps(_arm(args.arm, args.rows, args.samples)))
        return
    results = []
    for kind in ("blocked", "whole"):
        cmd = [sys.executable, "-m", "benchmarks.intervals_memory", "--arm", kind]
        cmd += ["--rows", str(args.rows), "--samples", str(args.samples)]
        done = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    blocked, whole = results
    if blocked["intervals"] != whole["intervals"]:
        raise SystemExit(f"the arms disagree: {blocked['intervals']} != {whole['intervals']}")
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    summary = {
        "rows": args.rows,
        "samples": args.samples,
        "loadavg": load,
        "arms": results,
        "peak_ratio_whole_over_blocked": round(
            whole["peak_over_data_mb"] / max(blocked["peak_over_data_mb"], 1e-9), 1
        ),
        "time_ratio_blocked_over_whole": round(blocked["seconds"] / whole["seconds"], 2),
        "intervals_identical": True,
    }
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
