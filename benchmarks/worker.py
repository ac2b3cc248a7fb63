"""Run one benchmark arm in this (fresh) process and write its result as JSON.

    python -m benchmarks.worker ARM CONFIG.json OUT.json

A process per arm is what makes peak memory (ru_maxrss) that arm's own, and keeps one arm's
allocator state, thread pools and caches from helping or hurting the next.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any


def arms() -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
    from benchmarks.arms import anatomy, classification, inference, peak, sft

    return {
        "peak": peak.run,
        "cls_tuneproof": classification.run_tuneproof,
        "cls_recipe": classification.run_recipe,
        "cls_anatomy": anatomy.run,
        "sft_prepare": sft.prepare,
        "sft_tuneproof": sft.run_tuneproof,
        "sft_trl": sft.run_trl,
        "inference": inference.run,
    }


def main(argv: list[str]) -> int:
    arm, cfg_path, out_path = argv
    cfg = json.loads(Path(cfg_path).read_text())
    try:
        result = arms()[arm](cfg)
    except Exception as exc:
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
    Path(out_path).write_text(json.dumps(result))
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
