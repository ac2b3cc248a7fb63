"""Seeded, stratified splitting and the leakage check between splits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import train_test_split

from tuneproof.data.clean import NearDuplicateIndex, dedup_key
from tuneproof.protocol.schema import LeakageSpec, NearDuplicateSpec, SplitSpec


def split_indices(n: int, labels: Sequence[str] | None, spec: SplitSpec, seed: int) -> dict[str, np.ndarray]:
    """Indices of each split, seeded; stratified by ``labels`` when given."""
    idx = np.arange(n)
    strat = np.asarray(labels) if labels is not None else None
    rest_frac = spec.validation + spec.test
    train_idx, rest = train_test_split(idx, test_size=rest_frac, random_state=seed, stratify=strat)
    if spec.validation == 0:
        return {"train": np.sort(train_idx), "validation": np.array([], dtype=int), "test": np.sort(rest)}
    rest_strat = strat[rest] if strat is not None else None
    val_idx, test_idx = train_test_split(
        rest, test_size=spec.test / rest_frac, random_state=seed + 1, stratify=rest_strat
    )
    return {"train": np.sort(train_idx), "validation": np.sort(val_idx), "test": np.sort(test_idx)}


@dataclass
class LeakageResult:
    exact: int = 0
    near: int = 0
    # (split, position) pairs to drop from evaluation splits
    leaked: dict[str, set[int]] = field(default_factory=lambda: {"validation": set(), "test": set()})
    examples: list[dict[str, str]] = field(default_factory=list)


def find_leaks(
    texts: dict[str, Sequence[str]],
    row_ids: dict[str, Sequence[str]],
    spec: LeakageSpec,
    near_spec: NearDuplicateSpec,
) -> LeakageResult:
    """Texts of validation/test that also occur (exactly or nearly) in an earlier split.

    Earlier means train for validation, and train or validation for test: a leaked example is always
    charged to the evaluation split, which is where it inflates scores.
    """
    out = LeakageResult()
    order = [s for s in ("train", "validation", "test") if s in texts]
    exact_seen: dict[str, str] = {}
    index = NearDuplicateIndex(near_spec) if spec.near else None
    for split in order:
        found_here: list[tuple[int, str, str, str]] = []
        for pos, (text, rid) in enumerate(zip(texts[split], row_ids[split], strict=True)):
            if split == "train":
                continue
            key = dedup_key(text)
            if spec.exact and key in exact_seen:
                found_here.append((pos, "exact", exact_seen[key], rid))
                continue
            if index is not None:
                hits = index.query(text)
                if hits:
                    found_here.append((pos, "near", hits[0][0], rid))
        for pos, kind, other, rid in found_here:
            out.leaked[split].add(pos)
            if kind == "exact":
                out.exact += 1
            else:
                out.near += 1
            if len(out.examples) < 20:
                out.examples.append({"kind": kind, "a": other, "b": f"{split}:{rid}"})
        # Index this split after checking it, so rows are compared with earlier splits only.
        for pos, (text, rid) in enumerate(zip(texts[split], row_ids[split], strict=True)):
            if pos in out.leaked.get(split, set()):
                continue
            exact_seen.setdefault(dedup_key(text), f"{split}:{rid}")
            if index is not None:
                index.add(f"{split}:{rid}", text)
    return out
