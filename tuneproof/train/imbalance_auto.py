"""`imbalance.strategy: auto`: rebalance single-label classification only when the classes are skewed.

The decision is a pure function of the training split's class counts, so the data stage (which
writes it into the data report before training) and the task (which applies it in the loss) reach
the same answer without handing state around. Below the threshold nothing changes: a balanced run
trains exactly as with ``strategy: none``.

Also here: the warning, before training, about classes with too few rows to learn from or to be
measured on, which the report repeats next to their per-class metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tuneproof.protocol.schema import ImbalanceSpec, Protocol

# The tasks whose loss `auto` may reweight (multi-label has its own per-label `class_weights`;
# token tags and regression targets have no class ratio that means the same thing).
AUTO_TASKS = ("classification",)
# What `auto` switches on past the threshold: class weights were never worse than oversampling beyond
# noise on Rotten Tomatoes subsampled to 1:1.5 ... 1:30 (docs/label-quality.md), and cost no extra steps.
AUTO_CHOICE = "class_weights"
# A class with fewer training rows than this is in few-shot territory: what the model learns of it
# swings with which rows were drawn. A class with fewer test rows than this cannot be measured: at
# 30 rows a 95% interval of its recall is up to +-0.18 wide.
LEARN_ROWS = 30
MEASURE_ROWS = 30


def ratio_of(counts: Mapping[str, int]) -> float | None:
    present = [n for n in counts.values() if n > 0]
    return max(present) / min(present) if len(present) >= 2 else None


def class_weights(counts: Mapping[str, int]) -> dict[str, float]:
    """``n / (k * count)`` per class, as the classification loss applies them."""
    n, k = sum(counts.values()), len(counts)
    return {lab: round(n / (k * c), 6) if c else 0.0 for lab, c in sorted(counts.items())}


def decide(spec: ImbalanceSpec, task: str, counts: Mapping[str, int]) -> dict[str, Any]:
    """The strategy training uses, and why: ``{requested, strategy, ratio, threshold, reason}``."""
    ratio = ratio_of(counts)
    out: dict[str, Any] = {"requested": spec.strategy, "ratio": ratio}
    if spec.strategy != "auto":
        return {**out, "strategy": spec.strategy, "reason": "set in the protocol (imbalance.strategy)"}
    out["threshold"] = spec.auto_ratio
    if task not in AUTO_TASKS:
        reason = f"auto rebalances single-label classification only; for {task} set imbalance.strategy"
        return {**out, "strategy": "none", "reason": reason}
    if ratio is None or ratio < spec.auto_ratio:
        shown = "one class" if ratio is None else f"{ratio:.1f}:1"
        reason = (
            f"the training classes are {shown} (largest:smallest), below imbalance.auto_ratio "
            f"{spec.auto_ratio:g}: no rebalancing"
        )
        return {**out, "strategy": "none", "reason": reason}
    reason = (
        f"the training classes are {ratio:.1f}:1 (largest:smallest), at or above imbalance.auto_ratio "
        f"{spec.auto_ratio:g}: {AUTO_CHOICE.replace('_', ' ')} (see docs/label-quality.md for what was "
        "measured)"
    )
    return {**out, "strategy": AUTO_CHOICE, "reason": reason}


def imbalance_report(protocol: Protocol, train_counts: Mapping[str, int] | None) -> dict[str, Any]:
    """The data report's ``imbalance`` entry: the decision, with the class weights where they apply."""
    if train_counts is None:  # no classes (regression, token tags, chat)
        return {"strategy": "none" if protocol.imbalance.strategy == "auto" else protocol.imbalance.strategy}
    out = decide(protocol.imbalance, protocol.task, train_counts)
    out["class_weights"] = class_weights(train_counts) if out["strategy"] == "class_weights" else None
    return out


def _half_width(n: int) -> float:
    return 1.96 * 0.5 / math.sqrt(n)


def small_class_warnings(class_counts: Mapping[str, Mapping[str, int]]) -> list[dict[str, Any]]:
    """Classes with fewer than LEARN_ROWS training or MEASURE_ROWS test rows, each with what it means."""
    labels = sorted({lab for counts in class_counts.values() for lab in counts})
    out: list[dict[str, Any]] = []
    for split, floor, what in (("train", LEARN_ROWS, "learn"), ("test", MEASURE_ROWS, "measure")):
        counts = class_counts.get(split)
        if counts is None:
            continue
        for lab in labels:
            n = int(counts.get(lab, 0))
            if n >= floor:
                continue
            if what == "learn":
                text = (
                    f"class {lab!r} has {n} training rows (< {floor}): too few to learn reliably; expect "
                    "its recall to vary with the rows drawn"
                )
            else:
                width = f"up to ±{_half_width(n):.2f}" if n else "undefined"
                text = (
                    f"class {lab!r} has {n} test rows (< {floor}): too few to measure; its per-class "
                    f"metrics have 95% intervals {width} wide"
                )
            out.append(
                {"split": split, "label": lab, "rows": n, "floor": floor, "problem": what, "text": text}
            )
    return out
