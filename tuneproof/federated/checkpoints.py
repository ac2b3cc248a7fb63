"""Crash-safe checkpoints of the global model, one per finished round.

Same recipe as the training checkpoints (tuneproof/train/checkpoint.py): the weights are written to
a temporary name and renamed, and ``checkpoint.json`` with their SHA-256 is written last, so a
round whose json is missing or whose hash does not match was interrupted and is ignored on resume.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save

from tuneproof.fsutil import atomic_write_bytes, atomic_write_json, sha256_file

Arrays = dict[str, np.ndarray]


def save_round(folder: Path, server_round: int, arrays: Arrays, record: dict[str, Any]) -> Path:
    out = folder / f"round-{server_round:04d}"
    out.mkdir(parents=True, exist_ok=True)
    weights = out / "global.safetensors"
    atomic_write_bytes(weights, save({k: np.ascontiguousarray(v) for k, v in arrays.items()}))
    atomic_write_json(
        out / "checkpoint.json", {"round": server_round, "sha256": sha256_file(weights), "record": record}
    )
    return out


def latest_round(folder: Path) -> tuple[int, Arrays, list[str]] | None:
    """The newest complete round's number and weights, and the incomplete ones skipped."""
    skipped: list[str] = []
    for out in sorted(folder.glob("round-*"), reverse=True):
        meta_path, weights = out / "checkpoint.json", out / "global.safetensors"
        try:
            meta = json.loads(meta_path.read_text())
            if not weights.exists() or sha256_file(weights) != meta["sha256"]:
                raise ValueError("weights do not match checkpoint.json")
        except (OSError, ValueError, KeyError) as exc:
            skipped.append(f"{out.name}: {exc}")
            continue
        return int(meta["round"]), load_file(str(weights)), skipped
    return None
