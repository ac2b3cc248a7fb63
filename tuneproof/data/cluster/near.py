"""Near duplicates by MinHash LSH bands, as partition functions: rows to band keys, buckets to pairs.

The signatures are the local stage's (datasketch MinHash, seed 1, over ``clean._shingles``) and the
bands are those of its ``NearDuplicateIndex`` (same ``b`` bands of ``r`` rows), so a pair is a
candidate here exactly when it is one there; grouping rows by band key (a shuffle) replaces the
in-memory LSH table. Candidates are confirmed by exact Jaccard, as locally.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pandas as pd

from tuneproof.data.clean import NearDuplicateIndex, _shingles
from tuneproof.protocol.schema import NearDuplicateSpec

PAIR_COLUMNS = ["a", "b", "a_id", "b_id", "a_split", "b_split", "similarity"]


def band_shape(spec: NearDuplicateSpec) -> tuple[int, int]:
    """``(bands, rows per band)`` of the local stage's LSH index for ``spec``."""
    lsh = NearDuplicateIndex(spec).lsh
    return int(lsh.b), int(lsh.r)


def band_rows(part: pd.DataFrame, spec: NearDuplicateSpec, group: str) -> pd.DataFrame:
    """One row per (row, band): ``band`` (a 64-bit key of the band's hash values), ``_order``,
    ``row_id``, the grouping column ``group`` and ``text``."""
    from datasketch import MinHash

    bands, r = band_shape(spec)
    template = MinHash(num_perm=spec.num_perm, seed=1)
    keys = np.empty((len(part), bands), dtype=np.int64)
    for i, text in enumerate(part["text"]):
        m = MinHash(
            num_perm=spec.num_perm, seed=1, permutations=template.permutations, scheme=template.scheme
        )
        m.update_batch(list(_shingles(text, spec)))
        hv = m.hashvalues
        for j in range(bands):
            digest = hashlib.blake2b(j.to_bytes(2, "big") + hv[j * r : (j + 1) * r].tobytes(), digest_size=8)
            keys[i, j] = int.from_bytes(digest.digest(), "big", signed=True)
    rep = np.repeat(np.arange(len(part)), bands)
    return pd.DataFrame(
        {
            "band": keys.reshape(-1),
            "_order": part["_order"].to_numpy()[rep],
            "row_id": part["row_id"].to_numpy()[rep],
            group: part[group].to_numpy()[rep],
            "text": part["text"].to_numpy()[rep],
        }
    )


def _jaccard(a: set[bytes], b: set[bytes]) -> float:
    return len(a & b) / max(1, len(a | b))


def bucket_pairs(
    bands: pd.DataFrame, spec: NearDuplicateSpec, group: str, allowed: Iterable[tuple[str, str]] | None = None
) -> pd.DataFrame:
    """Confirmed pairs (Jaccard >= threshold) among rows sharing a band key, ``a`` before ``b``.

    Within one value of ``group`` when ``allowed`` is None (de-duplication); otherwise only pairs
    whose (earlier group, later group) is in ``allowed`` (leakage: (train, test), ...).
    """
    ok = set(allowed) if allowed is not None else None
    out: list[tuple[int, int, str, str, str, str, float]] = []
    shingles: dict[int, set[bytes]] = {}
    for _, bucket in bands.groupby("band", sort=False):
        if len(bucket) < 2:
            continue
        rows = bucket.sort_values("_order").drop_duplicates("_order")
        recs = list(zip(rows["_order"], rows["row_id"], rows[group], rows["text"], strict=True))
        for i, (oa, ida, ga, ta) in enumerate(recs):
            for ob, idb, gb, tb in recs[i + 1 :]:
                if (ok is None and ga != gb) or (ok is not None and (ga, gb) not in ok):
                    continue
                sa = shingles.setdefault(oa, _shingles(ta, spec))
                sb = shingles.setdefault(ob, _shingles(tb, spec))
                sim = _jaccard(sa, sb)
                if sim >= spec.threshold:
                    out.append((int(oa), int(ob), ida, idb, ga, gb, sim))
    df = pd.DataFrame(out, columns=PAIR_COLUMNS)
    return df.astype({"a": "int64", "b": "int64", "similarity": "float64"})


def greedy_drops(pairs: pd.DataFrame) -> dict[int, tuple[int, str, float]]:
    """Rows the local stage's greedy pass drops: in input order, a row goes when a confirmed pair
    links it to an earlier row that was kept. Returns ``{dropped: (kept, kept_id, similarity)}``
    with the most similar kept row, as the local report names it."""
    earlier: dict[int, list[tuple[int, str, float]]] = {}
    for a, b, a_id, sim in zip(pairs["a"], pairs["b"], pairs["a_id"], pairs["similarity"], strict=True):
        earlier.setdefault(int(b), []).append((int(a), str(a_id), float(sim)))
    dropped: dict[int, tuple[int, str, float]] = {}
    for row in sorted(earlier):
        kept = [e for e in earlier[row] if e[0] not in dropped]
        if kept:
            dropped[row] = max(kept, key=lambda e: e[2])
    return dropped
