"""Near-duplicate detection over whole columns: MinHash signatures as one numpy matrix, LSH banding
by sorting, candidates confirmed by exact Jaccard.

The per-text form (one datasketch ``MinHash`` object and one shingle set per row, queried against
a ``MinHashLSH``) costs about 10 KB and a few hundred Python operations per row. Here the shingles
of a chunk of texts are cut as a (windows x k) code-point matrix, de-duplicated by Arrow's hash
kernel, hashed once per distinct shingle, and reduced to signatures with ``np.minimum.reduceat``.

The signatures are bit for bit those of ``datasketch.MinHash(num_perm, seed=1)`` (affine32 scheme,
SHA-1 of the UTF-8 shingle) and the bands are those ``MinHashLSH`` picks for the same threshold and
weights, so the LSH candidates, and after the exact Jaccard check the pairs, are the ones the
per-text index finds. datasketch has no bulk form that takes a shingle matrix (``MinHash.bulk``
still builds one object per set), which is why the reduction is written here.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import get_context

import numpy as np

from tuneproof.data.clean import near_key
from tuneproof.data.minhash_kernel import min_reduce
from tuneproof.protocol.schema import NearDuplicateSpec

# Weighted towards recall: every candidate is confirmed by exact Jaccard, so a false positive costs
# one set comparison, while a false negative keeps a duplicate. At 0.9 these give 9 bands of 14 rows
# (0.90 found 90%, 0.92 97%, 0.95 99.8% of the time); the default (0.5, 0.5) gives 5 bands of 25.
LSH_WEIGHTS = (0.05, 0.95)
SEED = 1
# Texts per block: shingles are de-duplicated and hashed once per block (a larger block repeats
# fewer hashes; the block's window matrix is ~3 MB per 1,000 texts of ~150 characters).
BLOCK = 16_384
# Texts per min-reduction: the (windows x num_perm) gather stays near 150 MB at 128 permutations.
REDUCE_TEXTS = 2048
# Below this many texts a second process costs more to start than it saves.
PARALLEL_MIN_ROWS = 40_000
_PAD = np.uint32(0xFFFFFFFF)  # not a code point: marks the missing tail of a text shorter than k


@lru_cache(maxsize=8)
def permutations(num_perm: int) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) of datasketch's affine32 scheme for ``seed=1``, taken from datasketch itself."""
    from datasketch import MinHash

    a, b = MinHash(num_perm=num_perm, seed=SEED).permutations
    return np.asarray(a, dtype=np.uint32), np.asarray(b, dtype=np.uint32)


@lru_cache(maxsize=8)
def bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows per band) as ``MinHashLSH(threshold, num_perm, weights=LSH_WEIGHTS)`` sets them."""
    from datasketch.lsh import _optimal_param

    b, r = _optimal_param(threshold, num_perm, *LSH_WEIGHTS)
    return int(b), int(r)


def _fmix32(hv: np.ndarray) -> np.ndarray:
    # MurmurHash3's finalizer, as datasketch applies it before the affine32 permutations.
    hv = hv ^ (hv >> np.uint32(16))
    hv = hv * np.uint32(0x85EBCA6B)
    hv = hv ^ (hv >> np.uint32(13))
    hv = hv * np.uint32(0xC2B2AE35)
    return hv ^ (hv >> np.uint32(16))


def _sha1_32(raw: bytes) -> int:
    return int.from_bytes(hashlib.sha1(raw).digest()[:4], "little")


def _block_signatures(keys: Sequence[str], k: int, num_perm: int) -> np.ndarray:
    """MinHash signatures (len(keys) x num_perm, uint32) of the k-character shingles of ``keys``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(keys)
    lens = np.fromiter((len(t) for t in keys), dtype=np.int64, count=n)
    cps = np.frombuffer("".join(keys).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    cps = np.concatenate([cps, np.full(k, _PAD, dtype=np.uint32)])
    text_start = np.concatenate([[0], np.cumsum(lens)[:-1]]) if n else np.zeros(0, np.int64)
    # A text of k characters or fewer is one shingle: itself (the per-text form does the same).
    n_windows = np.maximum(1, lens - k + 1)
    first_window = np.concatenate([[0], np.cumsum(n_windows)[:-1]]) if n else np.zeros(0, np.int64)
    owner = np.repeat(np.arange(n), n_windows)
    offset = np.arange(int(n_windows.sum())) - first_window[owner]
    grid = cps[(text_start[owner] + offset)[:, None] + np.arange(k)[None, :]]
    short = lens[owner] < k
    if short.any():
        cols = np.arange(k)[None, :]
        grid[short] = np.where(cols < lens[owner][short][:, None], grid[short], _PAD)
    grid = np.ascontiguousarray(grid)
    width = 4 * k
    arr = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), len(grid), [None, pa.py_buffer(grid)])
    encoded = pc.dictionary_encode(arr)
    ids = encoded.indices.to_numpy(zero_copy_only=False)
    distinct = np.frombuffer(encoded.dictionary.buffers()[1], dtype=np.uint32)[: len(encoded.dictionary) * k]
    hv = _shingle_hashes(distinct.reshape(-1, k), k)
    a, b = permutations(num_perm)
    perm = _fmix32(hv)[:, None] * a[None, :] + b[None, :]
    sig = min_reduce(perm, ids, first_window, n_windows, REDUCE_TEXTS)
    return sig


def _shingle_hashes(distinct: np.ndarray, k: int) -> np.ndarray:
    """SHA-1 (first 4 bytes, little-endian, as datasketch's sha1_hash32) of each shingle's UTF-8."""
    padded = (distinct == _PAD).any(axis=1)
    full = distinct[~padded]
    text = full.tobytes().decode("utf-32-le", "surrogatepass")
    hv = np.empty(len(distinct), dtype=np.uint32)
    sha1 = hashlib.sha1
    hv[~padded] = np.fromiter(
        (
            int.from_bytes(sha1(text[i : i + k].encode("utf-8", "surrogatepass")).digest()[:4], "little")
            for i in range(0, len(text), k)
        ),
        dtype=np.uint32,
        count=len(full),
    )
    hv[padded] = [_sha1_32(_shingle_bytes(row)) for row in distinct[padded]]
    return hv


def _shingle_bytes(row: np.ndarray) -> bytes:
    cut = row[row != _PAD]
    return cut.tobytes().decode("utf-32-le", "surrogatepass").encode()


def _worker_block(args: tuple[list[str], int, int, NearDuplicateSpec | None]) -> np.ndarray:
    keys, k, num_perm, spec = args
    if spec is not None:
        keys = [near_key(t, spec) for t in keys]
    return _block_signatures(keys, k, num_perm)


def text_signatures(texts: Sequence[str], spec: NearDuplicateSpec, workers: int | None = None) -> np.ndarray:
    """Signatures of the comparison keys of ``texts`` (:func:`near_key`), the keys made in the
    workers too (the punctuation regex costs as much as the hashing)."""
    return signatures(texts, spec.shingle_chars, spec.num_perm, workers, spec)


def signatures(
    keys: Sequence[str],
    k: int,
    num_perm: int,
    workers: int | None = None,
    spec: NearDuplicateSpec | None = None,
) -> np.ndarray:
    """Signatures of every key, in blocks; across ``workers`` processes (default:
    :func:`data_workers`) when there are enough rows.
    With ``spec``, ``keys`` are texts and their :func:`near_key` is taken first."""
    n = len(keys)
    out = np.empty((n, num_perm), dtype=np.uint32)
    blocks = [(s, min(n, s + BLOCK)) for s in range(0, n, BLOCK)]
    workers = data_workers() if workers is None else workers
    if workers > 1 and n >= PARALLEL_MIN_ROWS:
        # spawn, not fork: the parent may hold torch/Arrow thread pools that a forked child inherits
        # locked. The children import numpy, pyarrow and this module only.
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            args = ((list(keys[s:e]), k, num_perm, spec) for s, e in blocks)
            for (s, e), sig in zip(blocks, pool.map(_worker_block, args), strict=True):
                out[s:e] = sig
        return out
    for s, e in blocks:
        out[s:e] = _worker_block((list(keys[s:e]), k, num_perm, spec))
    return out


def data_workers() -> int:
    """Processes for the signatures: ``TUNEPROOF_DATA_WORKERS`` when set; else two where two cores
    are free (the 1-minute load average at most ``cores - 1``), one otherwise.

    A second process only pays on an idle core: on this 2-core machine it measured 1.40x at 200k
    rows with the load near 1, and 0.45-0.59x with every core already busy (load 10-25; spawn
    start-up and no core to run on), docs/performance.md. The signatures are identical either way,
    so the choice changes time only."""
    env = os.environ.get("TUNEPROOF_DATA_WORKERS")
    if env:
        return max(1, int(env))
    cores = os.cpu_count() or 1
    if cores < 2:
        return 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # not available on this platform: no way to tell a free core
        return 1
    return 2 if load <= cores - 1 else 1


class LshBuckets:
    """The buckets of a MinHash LSH index over rows ``0..n-1``, built at once from their signatures;
    rows are then inserted and queried by number, as with ``MinHashLSH.insert`` / ``query``.

    Only buckets with two or more rows are kept: a row alone in all its buckets can never be a
    candidate. A query returns the inserted rows that share a bucket with the row, ascending.

    ``rows``: row i of the index is ``sig[rows[i]]`` (positions into a larger matrix), so a caller
    with a subset of a matrix's rows passes their positions instead of a copy of their signatures;
    only one band's columns (n x r) are gathered at a time."""

    def __init__(self, sig: np.ndarray, threshold: float, rows: np.ndarray | None = None) -> None:
        b, r = bands(threshold, sig.shape[1])
        self.of_row: dict[int, list[int]] = {}
        self.inserted: list[list[int]] = []
        for band in range(b):
            if rows is None:
                cols = np.ascontiguousarray(sig[:, band * r : (band + 1) * r])
            else:
                cols = sig[rows, band * r : (band + 1) * r]
            key = np.zeros(len(cols), dtype=np.uint64)
            for c in range(r):  # a 64-bit fold of the band, only to sort; equality is checked exactly
                key = (key ^ cols[:, c].astype(np.uint64)) * np.uint64(0x9E3779B97F4A7C15)
            order = np.argsort(key, kind="stable")
            sk = key[order]
            same = sk[1:] == sk[:-1]
            if not same.any():
                continue
            # Runs of equal keys: starts where a run of length >= 2 begins.
            edges = np.flatnonzero(np.diff(np.concatenate([[False], same, [False]]).astype(np.int8)))
            for start, stop in zip(edges[::2], edges[1::2] + 1, strict=True):
                buckets: dict[bytes, list[int]] = {}
                for m in np.sort(order[start:stop]):
                    buckets.setdefault(cols[m].tobytes(), []).append(int(m))
                for members in buckets.values():
                    if len(members) < 2:
                        continue
                    bid = len(self.inserted)
                    self.inserted.append([])
                    for m in members:
                        self.of_row.setdefault(m, []).append(bid)

    def query(self, row: int) -> list[int]:
        out: set[int] = set()
        for bid in self.of_row.get(row, ()):
            out.update(self.inserted[bid])
        return sorted(out)

    def insert(self, row: int) -> None:
        for bid in self.of_row.get(row, ()):
            self.inserted[bid].append(row)

    def rows_with_candidates(self) -> list[int]:
        return sorted(self.of_row)


def compact_rows(sig: np.ndarray, keep: np.ndarray, block: int = 1 << 16) -> np.ndarray:
    """``sig[keep]`` without a second matrix: the kept rows are moved to the front of ``sig`` in
    place, block by block, and the front is returned as a view (``sig`` itself is overwritten).

    Safe because kept positions only move forward: output row i comes from input row idx[i] >= i,
    and each block's source rows are read (into a block-sized temporary) before they are written."""
    idx = np.flatnonzero(keep)
    for start in range(0, len(idx), block):
        part = idx[start : start + block]
        sig[start : start + len(part)] = sig[part]
    return sig[: len(idx)]


def jaccard(a: set[bytes], b: set[bytes]) -> float:
    return len(a & b) / max(1, len(a | b))


@dataclass
class NearHit:
    row: int  # the removed (later) row
    kept: int  # the earlier kept row it repeats (the most similar; the earliest on a tie)
    similarity: float


class ShingleCache:
    """Exact shingle sets, built only for rows that meet a candidate."""

    def __init__(self, shingles: Callable[[int], set[bytes]]) -> None:
        self._make = shingles
        self._sets: dict[int, set[bytes]] = {}

    def __call__(self, i: int) -> set[bytes]:
        if i not in self._sets:
            self._sets[i] = self._make(i)
        return self._sets[i]


def confirmed(
    buckets: LshBuckets, row: int, cache: ShingleCache, threshold: float, allowed: Callable[[int], bool]
) -> list[tuple[int, float]]:
    """Inserted rows sharing a bucket with ``row`` whose exact Jaccard reaches ``threshold``."""
    out = []
    for i in buckets.query(row):
        if allowed(i):
            sim = jaccard(cache(row), cache(i))
            if sim >= threshold:
                out.append((i, sim))
    return out


def _same_group(groups: Sequence[object], j: int) -> Callable[[int], bool]:
    group = groups[j]
    return lambda i: bool(groups[i] == group)


def greedy_near_duplicates(
    sig: np.ndarray,
    groups: Sequence[object],
    shingles: Callable[[int], set[bytes]],
    threshold: float,
) -> tuple[np.ndarray, list[NearHit]]:
    """Keep each row unless an earlier kept row of the same group is a near duplicate of it.

    The same decision, row by row, as inserting every kept row into a MinHash LSH index (one per
    group) and querying each row before it; ``shingles(i)`` gives row i's exact shingle set."""
    keep = np.ones(len(sig), dtype=bool)
    hits: list[NearHit] = []
    buckets = LshBuckets(sig, threshold)
    cache = ShingleCache(shingles)
    for j in buckets.rows_with_candidates():
        found = confirmed(buckets, j, cache, threshold, _same_group(groups, j))
        if found:
            keep[j] = False
            # The most similar kept row; max keeps the first (earliest) of equals.
            i, sim = max(found, key=lambda h: h[1])
            hits.append(NearHit(j, i, sim))
        else:
            buckets.insert(j)
    return keep, hits
