"""Seeded, stratified splitting and the leakage check between splits."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, train_test_split

from tuneproof.data import near_dup
from tuneproof.data.clean import dedup_key, shingle_set
from tuneproof.data.near_dup import LshBuckets, ShingleCache, confirmed
from tuneproof.evaluate.cluster_bootstrap import cluster_codes
from tuneproof.protocol.schema import LeakageSpec, NearDuplicateSpec, SplitSpec


def split_indices(
    n: int,
    labels: Sequence[str] | None,
    spec: SplitSpec,
    seed: int,
    groups: Sequence[object] | None = None,
) -> dict[str, np.ndarray]:
    """Indices of each split, seeded; stratified by ``labels`` when given.

    With ``groups`` (``split.group_by``) every group lands in one split whole, and the fractions are
    fractions of the groups (scikit-learn's GroupShuffleSplit); labels are then not stratified.
    """
    if groups is not None:
        return _group_split(n, groups, spec, seed)
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


def _group_split(n: int, groups: Sequence[object], spec: SplitSpec, seed: int) -> dict[str, np.ndarray]:
    idx = np.arange(n)
    codes = np.asarray(cluster_codes(list(groups)))
    rest_frac = spec.validation + spec.test
    first = GroupShuffleSplit(n_splits=1, test_size=rest_frac, random_state=seed)
    train_idx, rest = next(first.split(idx, groups=codes))
    if spec.validation == 0:
        return {"train": np.sort(train_idx), "validation": np.array([], dtype=int), "test": np.sort(rest)}
    second = GroupShuffleSplit(n_splits=1, test_size=spec.test / rest_frac, random_state=seed + 1)
    val_pos, test_pos = next(second.split(rest, groups=codes[rest]))
    return {
        "train": np.sort(train_idx),
        "validation": np.sort(rest[val_pos]),
        "test": np.sort(rest[test_pos]),
    }


def straddling_clusters(values: dict[str, Sequence[object]], column: str) -> dict[str, Any]:
    """How many clusters (values of ``column``) have rows in more than one split, per pair of splits.

    A cluster in both train and test lets the model be scored on, say, a movie it was trained on,
    which is leakage of a kind no text comparison finds. Missing values are not a cluster.
    """
    present: dict[str, set[str]] = {
        split: {str(v) for v in vals if not (v is None or (isinstance(v, float) and math.isnan(v)))}
        for split, vals in values.items()
    }
    every = set().union(*present.values()) if present else set()
    names = [s for s in ("train", "validation", "test") if s in present]
    pairs = {f"{a}/{b}": len(present[a] & present[b]) for i, a in enumerate(names) for b in names[i + 1 :]}
    straddling = sorted(c for c in every if sum(c in present[s] for s in names) > 1)
    return {
        "column": column,
        "clusters": len(every),
        "straddling": len(straddling),
        "pairs": pairs,
        "examples": straddling[:10],
    }


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
    signatures: dict[str, np.ndarray] | None = None,
    signature_rows: tuple[np.ndarray, Mapping[str, np.ndarray]] | None = None,
    keys: Mapping[str, Sequence[str]] | None = None,
) -> LeakageResult:
    """Texts of validation/test that also occur (exactly or nearly) in an earlier split.

    Earlier means train for validation, and train or validation for test: a leaked example is always
    charged to the evaluation split, which is where it inflates scores. ``signatures``: each split's
    MinHash signatures when the cleaning stage already computed them (else they are computed here).
    ``signature_rows``: the same as one matrix and each split's row positions in it, so no split's
    signatures are copied (a million rows' matrix is 512 MB). ``keys``: each split's
    :func:`dedup_key` of its texts when the caller has them (the cleaning stage does), so they are
    not made a second time."""
    out = LeakageResult()
    order = [s for s in ("train", "validation", "test") if s in texts]
    offsets = dict(zip(order, np.cumsum([0, *[len(texts[s]) for s in order]]).tolist(), strict=False))
    everything = [t for s in order for t in texts[s]]
    split_of = np.repeat(np.arange(len(order)), [len(texts[s]) for s in order])
    buckets: LshBuckets | None = None
    cache: ShingleCache | None = None
    if spec.near:
        if signature_rows is not None:
            matrix, positions = signature_rows
            parts = [np.asarray(positions[s], dtype=np.int64) for s in order]
            rows = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
            buckets = LshBuckets(matrix, near_spec.threshold, rows)
        else:
            if signatures is not None:
                sig = np.concatenate([signatures[s] for s in order]) if order else np.zeros((0, 1), np.uint32)
            else:
                sig = near_dup.text_signatures(everything, near_spec)
            buckets = LshBuckets(sig, near_spec.threshold)
        cache = ShingleCache(lambda i: shingle_set(everything[i], near_spec))
    exact_seen: dict[str, str] = {}
    split_keys = keys if keys is not None else {s: [dedup_key(t) for t in texts[s]] for s in order}

    def earlier_split(si: int) -> Callable[[int], bool]:
        return lambda i: bool(split_of[i] < si)

    for si, split in enumerate(order):
        base = offsets[split]
        found_here: list[tuple[int, str, str, str]] = []
        for pos, (key, rid) in enumerate(zip(split_keys[split], row_ids[split], strict=True)):
            if split == "train":
                continue
            if spec.exact and key in exact_seen:
                found_here.append((pos, "exact", exact_seen[key], rid))
                continue
            if buckets is not None and cache is not None:
                hits = confirmed(buckets, base + pos, cache, near_spec.threshold, earlier_split(si))
                if hits:
                    other = hits[0][0]  # the earliest earlier row
                    name = order[int(split_of[other])]
                    found_here.append((pos, "near", f"{name}:{row_ids[name][other - offsets[name]]}", rid))
        for pos, kind, other_id, rid in found_here:
            out.leaked[split].add(pos)
            if kind == "exact":
                out.exact += 1
            else:
                out.near += 1
            if len(out.examples) < 20:
                out.examples.append({"kind": kind, "a": other_id, "b": f"{split}:{rid}"})
        # Index this split after checking it, so rows are compared with earlier splits only.
        for pos, (key, rid) in enumerate(zip(split_keys[split], row_ids[split], strict=True)):
            if pos in out.leaked.get(split, set()):
                continue
            exact_seen.setdefault(key, f"{split}:{rid}")
            if buckets is not None:
                buckets.insert(base + pos)
    return out
