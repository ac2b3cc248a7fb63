"""Row bootstrap resamples drawn block by block from one seeded stream, never held whole.

The index matrix of a row bootstrap is ``samples x n``: 1000 resamples of a million-row test split
are 4 GB of int32, more than the data and the model's predictions together. A statistic only ever
needs a few resamples at a time (``bootstrap.replicates`` works in row blocks), so the matrix is
not stored: each pass re-draws it from a fresh generator seeded as before, ``step`` resamples at a
time. numpy's ``Generator.integers`` consumes its bit stream value by value (PCG64 keeps a spare
32-bit half in the generator's own state), so ``integers(size=(a, n))`` followed by
``integers(size=(b, n))`` yields exactly the rows of one ``integers(size=(a + b, n))`` call: the
blocked draw is bit for bit the matrix drawn whole, and results for a given seed are unchanged.

Small matrices (today's test splits) are drawn once and kept, so the many statistics of an
evaluation do not re-draw them; above ``CACHE_ELEMENTS`` each pass re-draws, trading draw time
(a few ns per element) for memory that stays at one block.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

# 16M int32 elements = 64 MB: every row bootstrap of today's protocols stays cached.
CACHE_ELEMENTS = 16_000_000


def _validate(n: int, samples: int) -> None:
    if n < 1:
        raise ValueError("cannot bootstrap an empty sample (n = 0)")
    if samples < 1:
        raise ValueError("need at least one bootstrap sample")


class RowResamples:
    """``samples`` resamples of ``n`` row numbers, drawn with replacement from ``default_rng(seed)``.

    ``rows``, when given, maps the drawn positions ``0..n-1`` to row numbers of a larger split (a
    slice's rows), as ``rows[draw]``.
    """

    __slots__ = ("_cache", "cache_elements", "n", "rows", "samples", "seed")

    def __init__(
        self,
        n: int,
        samples: int,
        seed: int,
        rows: np.ndarray | None = None,
        cache_elements: int = CACHE_ELEMENTS,
    ) -> None:
        _validate(n, samples)
        if rows is not None and rows.shape != (n,):
            raise ValueError(f"rows must have shape ({n},), got {rows.shape}")
        self.n = n
        self.samples = samples
        self.seed = seed
        self.rows = rows
        self.cache_elements = cache_elements
        self._cache: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.samples, self.n

    @property
    def dtype(self) -> type[np.signedinteger]:
        # int32 halves the memory of the largest array in an evaluation; row numbers fit easily.
        # A slice's draw keeps numpy's default int64, as it always has (a different dtype draws
        # a different stream).
        if self.rows is not None:
            return np.int64
        return np.int32 if self.n < 2**31 else np.int64

    def _draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        block = rng.integers(0, self.n, size=(count, self.n), dtype=self.dtype)
        return block if self.rows is None else self.rows[block]

    def blocks(self, step: int) -> Iterator[np.ndarray]:
        """Consecutive blocks of at most ``step`` resamples, shape ``[<=step, n]``, in draw order."""
        if step < 1:
            raise ValueError(f"step must be at least 1, got {step}")
        if self._cache is None and self.samples * self.n <= self.cache_elements:
            self._cache = self._draw(np.random.default_rng(self.seed), self.samples)
        if self._cache is not None:
            for start in range(0, self.samples, step):
                yield self._cache[start : start + step]
            return
        rng = np.random.default_rng(self.seed)
        for start in range(0, self.samples, step):
            yield self._draw(rng, min(step, self.samples - start))

    def materialize(self) -> np.ndarray:
        """The whole ``[samples, n]`` matrix (what ``bootstrap_indices`` returns)."""
        if self._cache is not None:
            return self._cache
        return self._draw(np.random.default_rng(self.seed), self.samples)
