"""The machine's own matmul peak, measured at the start of the run (the MFU denominator).

Several paths are timed because on CPU they differ by orders of magnitude: plain ``torch.mm`` on
bf16 tensors may miss oneDNN entirely, while ``F.linear`` (what ``nn.Linear`` calls) under bf16
autocast reaches it; fp32 ``mm`` goes through MKL SGEMM. The peak of a precision is the best of its
paths: the fastest matmul this torch build can do in it on these threads.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

SIZES = (512, 1024, 2048, 3072, 4096)  # from small: a slow path must be caught cheaply


def _best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    fn()  # first call creates the oneDNN primitive / warms the caches
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _path(name: str, n: int) -> Callable[[], Any]:
    import torch
    from torch.nn import functional as F

    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g)
    b = torch.randn(n, n, generator=g)
    if name == "bf16_mm":
        ab, bb = a.bfloat16(), b.bfloat16()
        return lambda: torch.mm(ab, bb)
    if name == "bf16_linear":
        ab, bb = a.bfloat16(), b.bfloat16()
        return lambda: F.linear(ab, bb)
    if name == "bf16_autocast_linear":
        # Activations arrive in fp32 and are cast, as in a model under autocast; the weight cast is
        # cached by autocast only inside one region, so it is paid per call here, like per forward.
        def run() -> Any:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return F.linear(a, b)

        return run
    if name == "fp32_mm":
        return lambda: torch.mm(a, b)
    if name == "fp32_linear":
        return lambda: F.linear(a, b)
    raise ValueError(name)


PATHS = ("bf16_linear", "bf16_autocast_linear", "bf16_mm", "fp32_mm", "fp32_linear")


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    """GFLOP/s of each path at the largest size whose single call stays under the time cap."""
    repeats = int(cfg.get("repeats", 5))
    cap = float(cfg.get("max_call_seconds", 1.0))
    paths: dict[str, Any] = {}
    for name in PATHS:
        results: list[dict[str, float]] = []
        for n in SIZES:
            fn = _path(name, n)
            t0 = time.perf_counter()
            fn()  # probe: a slow path (seconds per call) must not eat the run's budget
            probe = time.perf_counter() - t0
            if probe > cap and results:
                break
            secs = _best_seconds(fn, repeats if probe <= cap else 1)
            results.append({"n": n, "gflops": 2 * n**3 / secs / 1e9, "seconds": secs})
            if probe > cap:
                break
        best = max(results, key=lambda r: r["gflops"])
        paths[name] = {"gflops": best["gflops"], "n": best["n"], "sizes": results}
    bf16 = max((v["gflops"], k) for k, v in paths.items() if k.startswith("bf16"))
    fp32 = max((v["gflops"], k) for k, v in paths.items() if k.startswith("fp32"))
    import torch

    from tuneproof.train.precision import choose_precision, cpu_has_native_bf16

    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": cpu_has_native_bf16(),
        "tuneproof_precision": choose_precision("auto")[0],
        "paths": paths,
        "bf16_gflops": bf16[0],
        "bf16_path": bf16[1],
        "fp32_gflops": fp32[0],
        "fp32_path": fp32[1],
        "repeats": repeats,
    }
