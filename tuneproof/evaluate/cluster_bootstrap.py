"""The cluster bootstrap: resample whole clusters (a movie's reviews, a patient's notes), not rows.

When rows of one cluster share something the model gets right or wrong together, they are not
independent draws, and a row bootstrap treats a cluster of 30 correlated rows as 30 pieces of
evidence: its intervals are too narrow (see docs/statistics.md for the measured under-coverage).
Resampling clusters with replacement keeps each cluster's rows together, so the spread of the
replicates reflects how much the score varies from cluster to cluster, which is what a new set of
movies or patients would see.

A resample of clusters has as many rows as the clusters drawn hold, which varies from draw to
draw, so the resamples are a list of index vectors rather than one ``[m, n]`` array. Where every
cluster has the same size (simulations, fixed-size conversations) they all have one length and are
stacked, so the vectorised statistics run on them in one pass as on a row bootstrap.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

from tuneproof.evaluate.row_resamples import RowResamples


def _is_missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def cluster_codes(values: Sequence[object]) -> np.ndarray:
    """Integer cluster ids ``0..C-1`` per row; a row with no value is a cluster of its own.

    Missing values are not pooled into one cluster: rows that lack a movie name are not reviews of
    one movie, and pooling them would invent a large cluster.
    """
    codes = np.empty(len(values), dtype=np.int64)
    seen: dict[str, int] = {}
    for i, v in enumerate(values):
        key = f"\0row{i}" if _is_missing(v) else str(v)
        codes[i] = seen.setdefault(key, len(seen))
    return codes


class ClusterResamples:
    """Resamples drawn cluster by cluster, each a vector of the row numbers of the clusters drawn.

    Not held whole: ``blocks(step)`` draws ``step`` resamples at a time from a fresh
    ``default_rng(seed)``, as ``RowResamples`` does for the row bootstrap. The cluster draws are
    ``integers(0, C, size=(step, C))`` in turn, which consume the generator's stream value by value,
    so consecutive blocks are exactly the rows of the one ``(samples, C)`` draw made before: for a
    given seed the resamples, and every interval computed from them, are unchanged.
    ``members[j]`` are cluster j's row numbers (of the whole split where ``rows_of`` maps a subset).
    """

    __slots__ = ("clusters", "members", "rows", "samples", "seed")

    def __init__(self, members: Sequence[np.ndarray], samples: int, seed: int, rows: int) -> None:
        self.members = tuple(members)
        self.clusters = len(self.members)
        self.samples = samples
        self.seed = seed
        self.rows = rows

    def draws(self, step: int) -> Iterator[np.ndarray]:
        """The drawn cluster numbers, ``[<=step, C]`` blocks in draw order."""
        if step < 1:
            raise ValueError(f"step must be at least 1, got {step}")
        rng = np.random.default_rng(self.seed)
        for start in range(0, self.samples, step):
            yield rng.integers(0, self.clusters, size=(min(step, self.samples - start), self.clusters))

    def blocks(self, step: int) -> Iterator[list[np.ndarray]]:
        """Consecutive blocks of at most ``step`` resamples (each a row-number vector), in draw order."""
        for block in self.draws(step):
            yield [np.concatenate([self.members[j] for j in row]) for row in block]

    @property
    def equal_lengths(self) -> bool:
        """Whether every resample has one length (every cluster the same size), so they stack."""
        return len({m.size for m in self.members}) <= 1

    @property
    def resample_rows(self) -> int:
        """Rows of each resample where they all have one length (:attr:`equal_lengths`)."""
        return self.clusters * (self.members[0].size if self.members else 0)

    @property
    def sets(self) -> tuple[np.ndarray, ...]:
        """Every resample, drawn whole (``samples x rows`` row numbers: small splits and tests only)."""
        return tuple(s for block in self.blocks(max(1, self.samples)) for s in block)

    def stacked(self) -> np.ndarray | None:
        """All resamples as one ``[m, n]`` array when they share one length, else None."""
        return np.stack(self.sets) if self.equal_lengths else None


def _members(codes: np.ndarray) -> tuple[int, list[np.ndarray]]:
    present, dense = np.unique(codes, return_inverse=True)
    c = present.size
    order = np.argsort(dense, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(dense, minlength=c))]
    return c, [order[bounds[j] : bounds[j + 1]] for j in range(c)]


def cluster_bootstrap_indices(codes: np.ndarray, samples: int, seed: int) -> ClusterResamples:
    """``samples`` resamples, each ``C`` clusters drawn with replacement from the ``C`` present."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.size == 0:
        raise ValueError("cannot bootstrap an empty sample (n = 0)")
    if samples < 1:
        raise ValueError("need at least one bootstrap sample")
    _, members = _members(codes)
    return ClusterResamples(members, samples, seed, int(codes.size))


def within(
    rows: np.ndarray, codes: np.ndarray | None, samples: int, seed: int
) -> RowResamples | ClusterResamples:
    """Resamples of a subset ``rows`` (a slice) of the test split, as row numbers of the whole split.

    Clustered when ``codes`` is given (clusters are those met in the subset), else by row.
    """
    if codes is None:
        return RowResamples(int(rows.size), samples, seed, rows=rows)
    local = cluster_bootstrap_indices(codes[rows], samples, seed)
    return ClusterResamples([rows[m] for m in local.members], samples, seed, int(rows.size))
