"""The points of a learning curve, each trained once and cached on disk by what determines it.

A point is (method, labels per class, repeat). Its test-split probabilities are stored under a key
that hashes the method's settings, the exact training rows, the splits' content, the base model and
the seed, so a point is reused by any later run that would train the same thing: adding a size
trains only that size, and an interrupted curve resumes from the points it finished. Each point is
written to a temporary folder and renamed into place, so a killed run never leaves half a point.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuneproof.curve.subsets import class_orders, nested_subset, per_class_counts
from tuneproof.fsutil import atomic_write_json

FULL = "all"
TrainPoint = Callable[[str, np.ndarray], np.ndarray]  # (method, training row positions) -> probs


def rows_digest(rows: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(rows, dtype=np.int64).tobytes()).hexdigest()


class PointCache:
    """``root/<key>/probs.npy`` and ``point.json``; ``context`` is everything shared by the points
    of one curve (splits, model, seed), ``settings`` what each method adds."""

    def __init__(self, root: Path, context: str, settings: dict[str, str]) -> None:
        self.root = root
        self.context = context
        self.settings = settings

    def key(self, method: str, rows: np.ndarray) -> str:
        parts = [self.context, method, self.settings.get(method, ""), rows_digest(rows)]
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]

    def load(self, key: str) -> np.ndarray | None:
        folder = self.root / key
        if not (folder / "point.json").is_file():  # written last: its presence means complete
            return None
        try:
            probs: np.ndarray = np.load(folder / "probs.npy", allow_pickle=False)
        except (OSError, ValueError):
            return None
        return probs

    def save(self, key: str, probs: np.ndarray, info: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        with (tmp / "probs.npy").open("wb") as fh:
            np.save(fh, np.asarray(probs, dtype=np.float64), allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        atomic_write_json(tmp / "point.json", info)
        final = self.root / key
        if final.exists():  # another process finished the same point first; its result is the same
            shutil.rmtree(tmp, ignore_errors=True)
            return
        os.replace(tmp, final)


@dataclass
class CurvePoints:
    """Test probabilities by method and size (``FULL`` for the whole split), one array per repeat."""

    probs: dict[str, dict[int | str, list[np.ndarray]]] = field(default_factory=dict)
    per_class: dict[int, dict[int, int]] = field(default_factory=dict)  # size -> class -> rows (repeat 0)
    trained: int = 0
    cached: int = 0
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, method: str, size: int | str, probs: np.ndarray) -> None:
        self.probs.setdefault(method, {}).setdefault(size, []).append(probs)


def compute_points(
    y_train: np.ndarray,
    sizes: Sequence[int],
    repeats: int,
    methods: Sequence[str],
    seed: int,
    cache: PointCache,
    train_point: TrainPoint,
    full: dict[str, np.ndarray | None],
    budget_seconds: float | None = None,
    on_point: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    only_repeats: Sequence[int] | None = None,
) -> CurvePoints:
    """Every point, smallest sizes first, so a budget that runs out cuts the largest ones.

    ``full`` gives, per method, the full-split point already at hand (the run's own model), None to
    train it here, or leaves the method out to have no full-split point. ``only_repeats`` limits
    the subsets to those repeats (each is the same subset as in a run of all ``repeats``), so
    separate processes can train different repeats into one cache.
    """
    out = CurvePoints()
    started = clock()
    all_rows = np.arange(len(y_train))
    orders = [class_orders(y_train, r, seed) for r in range(repeats)]
    plan: list[tuple[str, int | str, int, np.ndarray]] = []
    for n in sizes:
        out.per_class[n] = per_class_counts(y_train, nested_subset(orders[0], n))
        for r in range(repeats):
            if only_repeats is not None and r not in only_repeats:
                continue
            rows = nested_subset(orders[r], n)
            plan.extend((m, n, r, rows) for m in methods)
    for m in methods:
        if m in full:
            plan.append((m, FULL, 0, all_rows))
    for method, size, repeat, rows in plan:
        label = f"{method} n={size} repeat={repeat}"
        given = full.get(method) if size == FULL else None
        if given is not None:
            out.add(method, size, given)
            continue
        key = cache.key(method, rows)
        probs = cache.load(key)
        if probs is not None:
            out.cached += 1
            out.add(method, size, probs)
            continue
        if budget_seconds is not None and clock() - started > budget_seconds:
            out.skipped.append(label)
            continue
        t0 = clock()
        probs = train_point(method, rows)
        cache.save(
            key,
            probs,
            {
                "method": method,
                "size": size,
                "repeat": repeat,
                "train_rows": len(rows),
                "seconds": round(clock() - t0, 3),
            },
        )
        out.trained += 1
        out.add(method, size, probs)
        if on_point is not None:
            on_point(f"{label}: trained in {clock() - t0:.1f}s")
    out.seconds = clock() - started
    return out


def context_key(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
