"""Exact and near duplicate images, within the data and across splits.

Exact: equal SHA-256 of the decoded, upright RGB pixels (a PNG and a JPEG-free re-save of it are
the same image; a one-pixel change is not). Near: perceptual hashes (imagehash) within a stated
Hamming distance, compared by XOR and popcount over packed bits. The comparison is exhaustive
(every image against every kept one), which is exact and fast enough for tens of thousands of
64-bit hashes; no approximate index is needed at that size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


class NearIndex:
    """Packed perceptual hashes of kept images; ``query`` answers the closest within ``max_distance``."""

    def __init__(self, max_distance: int) -> None:
        self.max_distance = max_distance
        self._ids: list[str] = []
        self._matrix: np.ndarray | None = None  # grown by doubling: adding stays O(1) amortised

    def add(self, row_id: str, bits: np.ndarray) -> None:
        n = len(self._ids)
        if self._matrix is None or n == len(self._matrix):
            grown = np.zeros((max(64, 2 * n), bits.size), dtype=np.uint8)
            if self._matrix is not None:
                grown[:n] = self._matrix[:n]
            self._matrix = grown
        self._matrix[n] = bits
        self._ids.append(row_id)

    def query(self, bits: np.ndarray) -> tuple[str, int] | None:
        if self._matrix is None:
            return None
        dist = np.bitwise_count(np.bitwise_xor(self._matrix[: len(self._ids)], bits)).sum(axis=1)
        best = int(np.argmin(dist))
        return (self._ids[best], int(dist[best])) if dist[best] <= self.max_distance else None


@dataclass
class DedupResult:
    keep: np.ndarray  # bool per row
    examples: list[dict[str, object]] = field(default_factory=list)


def exact_duplicates(
    row_ids: Sequence[str], groups: Sequence[str], hashes: Sequence[str], texts: Sequence[str], limit: int
) -> DedupResult:
    """Later rows whose pixel hash equals an earlier row's in the same group."""
    first: dict[tuple[str, str], int] = {}
    keep = np.ones(len(row_ids), dtype=bool)
    examples: list[dict[str, object]] = []
    for i, (g, h) in enumerate(zip(groups, hashes, strict=True)):
        j = first.setdefault((g, h), i)
        if j != i:
            keep[i] = False
            if len(examples) < limit:
                examples.append(_example("exact duplicate", row_ids, texts, i, j))
    return DedupResult(keep, examples)


def near_duplicates(
    row_ids: Sequence[str],
    groups: Sequence[str],
    bits: Sequence[np.ndarray],
    texts: Sequence[str],
    max_distance: int,
    limit: int,
) -> DedupResult:
    """Later rows within ``max_distance`` bits of a kept row of the same group (first kept wins)."""
    indexes: dict[str, NearIndex] = {}
    position = {rid: i for i, rid in enumerate(row_ids)}
    keep = np.ones(len(row_ids), dtype=bool)
    examples: list[dict[str, object]] = []
    for i, (rid, g, b) in enumerate(zip(row_ids, groups, bits, strict=True)):
        index = indexes.setdefault(g, NearIndex(max_distance))
        hit = index.query(b)
        if hit is None:
            index.add(rid, b)
            continue
        keep[i] = False
        if len(examples) < limit:
            examples.append(
                {**_example("near duplicate", row_ids, texts, i, position[hit[0]]), "distance": hit[1]}
            )
    return DedupResult(keep, examples)


def conflicting_labels(hashes: Sequence[str], labels: Sequence[str]) -> set[str]:
    """Pixel hashes that occur with more than one label."""
    seen: dict[str, set[str]] = {}
    for h, lab in zip(hashes, labels, strict=True):
        seen.setdefault(h, set()).add(lab)
    return {h for h, labs in seen.items() if len(labs) > 1}


@dataclass
class ImageLeaks:
    exact: int = 0
    near: int = 0
    leaked: dict[str, set[int]] = field(default_factory=lambda: {"validation": set(), "test": set()})
    examples: list[dict[str, object]] = field(default_factory=list)


def find_image_leaks(
    splits: dict[str, tuple[Sequence[str], Sequence[str], Sequence[np.ndarray]]],
    exact: bool,
    near: bool,
    max_distance: int,
    limit: int = 20,
) -> ImageLeaks:
    """Validation/test images that repeat (exactly or nearly) an image of an earlier split.

    ``splits``: name -> (row ids, pixel hashes, perceptual hash bits). Like the text check, a leak is
    charged to the later (evaluation) split, where it inflates scores.
    """
    out = ImageLeaks()
    seen: dict[str, str] = {}
    index = NearIndex(max_distance) if near else None
    for split in [s for s in ("train", "validation", "test") if s in splits]:
        ids, hashes, bits = splits[split]
        found: list[tuple[int, str, str, int | None]] = []
        if split != "train":
            for pos, (h, b) in enumerate(zip(hashes, bits, strict=True)):
                if exact and h in seen:
                    found.append((pos, "exact", seen[h], None))
                    continue
                hit = index.query(b) if index is not None else None
                if hit is not None:
                    found.append((pos, "near", hit[0], hit[1]))
        for pos, kind, other, dist in found:
            out.leaked[split].add(pos)
            if kind == "exact":
                out.exact += 1
            else:
                out.near += 1
            if len(out.examples) < limit:
                e: dict[str, object] = {"kind": kind, "a": other, "b": f"{split}:{ids[pos]}"}
                if dist is not None:
                    e["distance"] = dist
                out.examples.append(e)
        for pos, (rid, h, b) in enumerate(zip(ids, hashes, bits, strict=True)):
            if pos in out.leaked.get(split, set()):
                continue
            seen.setdefault(h, f"{split}:{rid}")
            if index is not None:
                index.add(f"{split}:{rid}", b)
    return out


def _example(kind: str, row_ids: Sequence[str], texts: Sequence[str], i: int, j: int) -> dict[str, object]:
    return {
        "kind": kind,
        "row_id": row_ids[i],
        "text": texts[i],
        "kept_id": row_ids[j],
        "kept_text": texts[j],
    }
