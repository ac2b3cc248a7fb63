"""Choose the numeric precision from the hardware: bf16 autocast where it is native, fp32 elsewhere.

Measured on a Zen 5 CPU with avx512_bf16: bf16 autocast trains about 2x faster than fp32 and infers
2-4x faster. CPUs without native bf16 emulate it slowly, and fp16 has no fast CPU path at all.
"""

from __future__ import annotations

from pathlib import Path

import torch


def cpu_has_native_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in (" avx512_bf16", " amx_bf16", " sve_bf16", " bf16"))


def choose_precision(requested: str) -> tuple[str, str]:
    """Return (precision, reason)."""
    if requested != "auto":
        return requested, "set by the protocol"
    if torch.cuda.is_available():
        if torch.cuda.is_bf16_supported():
            return "bf16", "CUDA device supports bf16"
        return "fp32", "CUDA device without bf16"
    if cpu_has_native_bf16():
        return "bf16", "CPU has native bf16 instructions (avx512_bf16/amx)"
    return "fp32", "CPU has no native bf16 instructions"
