"""Cleaning steps: normalisation, exact and near duplicates, conflicting labels.

Each step returns the rows it keeps and how many it removed, so the data report can count every
row that disappears.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from tuneproof.protocol.schema import CleaningSpec, NearDuplicateSpec

_WS = re.compile(r"\s+")
_NON_WORD = re.compile(r"[\W\d_]+", re.UNICODE)


def normalize_text(text: str, spec: CleaningSpec) -> str:
    if spec.unicode_form != "none":
        text = unicodedata.normalize(spec.unicode_form, text)
    if spec.normalize_whitespace:
        text = _WS.sub(" ", text).strip()
    return text


def dedup_key(text: str) -> str:
    """The key two texts must share to count as exact duplicates: case-folded, whitespace-collapsed."""
    return _WS.sub(" ", text.casefold()).strip()


def near_key(text: str) -> str:
    """Text reduced for near-duplicate shingling: case-folded, punctuation and digits removed."""
    return _NON_WORD.sub(" ", text.casefold()).strip()


def _shingles(text: str, k: int) -> set[bytes]:
    t = near_key(text)
    if len(t) <= k:
        return {t.encode()}
    return {t[i : i + k].encode() for i in range(len(t) - k + 1)}


class NearDuplicateIndex:
    """MinHash LSH (datasketch) over character shingles; candidates are confirmed by exact Jaccard
    so the reported near duplicates are at or above the threshold, not just LSH collisions."""

    def __init__(self, spec: NearDuplicateSpec) -> None:
        from datasketch import MinHashLSH

        self.spec = spec
        self.lsh = MinHashLSH(threshold=spec.threshold, num_perm=spec.num_perm)
        self.shingles: dict[str, set[bytes]] = {}
        self._template: Any = None

    def _minhash(self, sh: set[bytes]) -> Any:
        from datasketch import MinHash

        # Building the permutations is most of MinHash's cost; share one set across all texts.
        if self._template is None:
            self._template = MinHash(num_perm=self.spec.num_perm, seed=1)
        t = self._template
        m = MinHash(num_perm=self.spec.num_perm, seed=1, permutations=t.permutations, scheme=t.scheme)
        m.update_batch(list(sh))
        return m

    def query(self, text: str) -> list[tuple[str, float]]:
        sh = _shingles(text, self.spec.shingle_chars)
        hits = []
        for key in self.lsh.query(self._minhash(sh)):
            other = self.shingles[key]
            jac = len(sh & other) / max(1, len(sh | other))
            if jac >= self.spec.threshold:
                hits.append((key, jac))
        return hits

    def add(self, key: str, text: str) -> None:
        sh = _shingles(text, self.spec.shingle_chars)
        self.shingles[key] = sh
        self.lsh.insert(key, self._minhash(sh))


def near_duplicate_description(spec: NearDuplicateSpec) -> str:
    return (
        f"Jaccard similarity >= {spec.threshold:g} between {spec.shingle_chars}-character shingles of the "
        "case-folded text with punctuation and digits removed (MinHash LSH candidates, "
        f"{spec.num_perm} permutations, confirmed by exact Jaccard)"
    )


def find_conflicts(keys: Sequence[str], labels: Sequence[str]) -> set[str]:
    """Keys (normalised texts) that appear with more than one label."""
    seen: dict[str, set[str]] = defaultdict(set)
    for k, lab in zip(keys, labels, strict=True):
        seen[k].add(lab)
    return {k for k, labs in seen.items() if len(labs) > 1}
