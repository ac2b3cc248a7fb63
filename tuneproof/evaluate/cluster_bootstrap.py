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
from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class ClusterResamples:
    """Resamples drawn cluster by cluster: each entry holds the row numbers of one resample."""

    sets: tuple[np.ndarray, ...]
    clusters: int
    rows: int

    @property
    def samples(self) -> int:
        return len(self.sets)

    def stacked(self) -> np.ndarray | None:
        """All resamples as one ``[m, n]`` array when they share one length, else None."""
        lengths = {s.size for s in self.sets}
        return np.stack(self.sets) if len(lengths) == 1 else None


def cluster_bootstrap_indices(codes: np.ndarray, samples: int, seed: int) -> ClusterResamples:
    """``samples`` resamples, each ``C`` clusters drawn with replacement from the ``C`` present."""
    codes = np.asarray(codes, dtype=np.int64)
    if codes.size == 0:
        raise ValueError("cannot bootstrap an empty sample (n = 0)")
    if samples < 1:
        raise ValueError("need at least one bootstrap sample")
    present, dense = np.unique(codes, return_inverse=True)
    c = present.size
    order = np.argsort(dense, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(dense, minlength=c))]
    members = [order[bounds[j] : bounds[j + 1]] for j in range(c)]
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, c, size=(samples, c))
    sets = tuple(np.concatenate([members[j] for j in row]) for row in draws)
    return ClusterResamples(sets=sets, clusters=c, rows=int(codes.size))


def within(
    rows: np.ndarray, codes: np.ndarray | None, samples: int, seed: int
) -> RowResamples | ClusterResamples:
    """Resamples of a subset ``rows`` (a slice) of the test split, as row numbers of the whole split.

    Clustered when ``codes`` is given (clusters are those met in the subset), else by row.
    """
    if codes is None:
        return RowResamples(int(rows.size), samples, seed, rows=rows)
    local = cluster_bootstrap_indices(codes[rows], samples, seed)
    return ClusterResamples(
        sets=tuple(rows[s] for s in local.sets), clusters=local.clusters, rows=int(rows.size)
    )
