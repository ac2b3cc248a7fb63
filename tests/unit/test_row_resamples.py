"""Row resamples drawn block by block agree bit for bit with the matrix drawn whole."""

from __future__ import annotations

import numpy as np
import pytest

from tuneproof.evaluate import bootstrap
from tuneproof.evaluate.bootstrap import (
    bootstrap_indices,
    estimate,
    paired_difference,
    replicates,
    replicates_many,
    row_resamples,
)
from tuneproof.evaluate.cluster_bootstrap import within
from tuneproof.evaluate.metrics import accuracy_stat, macro_stat, roc_auc_stat
from tuneproof.evaluate.row_resamples import RowResamples


def _whole(n: int, samples: int, seed: int) -> np.ndarray:
    # The draw as bootstrap_indices made it before the blocked draw existed.
    return np.random.default_rng(seed).integers(0, n, size=(samples, n), dtype=np.int32)


@pytest.mark.parametrize("step", [1, 3, 7, 64, 1000])
def test_blocks_concatenate_to_the_whole_draw(step: int) -> None:
    lazy = RowResamples(53, 101, seed=11, cache_elements=0)
    blocks = list(lazy.blocks(step))
    assert all(b.shape[0] <= step for b in blocks)
    assert lazy._cache is None  # above its cache size nothing whole is kept
    assert np.array_equal(np.concatenate(blocks), _whole(53, 101, 11))
    # A second pass re-draws the same stream.
    assert np.array_equal(np.concatenate(list(lazy.blocks(step))), _whole(53, 101, 11))


def test_bootstrap_indices_is_the_old_draw() -> None:
    assert np.array_equal(bootstrap_indices(40, 30, seed=2), _whole(40, 30, 2))
    assert bootstrap_indices(40, 30, seed=2).dtype == np.int32
    with pytest.raises(ValueError):
        row_resamples(0, 10, seed=1)
    with pytest.raises(ValueError):
        row_resamples(5, 0, seed=1)


def test_slice_resamples_are_the_old_slice_draw() -> None:
    rows = np.array([3, 8, 9, 20, 21, 30, 44])
    old = rows[np.random.default_rng(5).integers(0, rows.size, size=(50, rows.size))]
    lazy = within(rows, None, 50, 5)
    assert isinstance(lazy, RowResamples)
    assert np.array_equal(lazy.materialize(), old)
    blocked = RowResamples(rows.size, 50, 5, rows=rows, cache_elements=0)
    assert np.array_equal(np.concatenate(list(blocked.blocks(6))), old)


def test_replicates_agree_blocked_and_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    n, samples = 300, 400
    y = rng.integers(0, 3, n)
    pred = np.where(rng.random(n) < 0.7, y, rng.integers(0, 3, n))
    probs = rng.dirichlet(np.ones(2), n)
    y2 = (rng.random(n) < probs[:, 1]).astype(np.int64)
    stats = {
        "accuracy": accuracy_stat((y == pred).astype(np.float64)),
        "macro_f1": macro_stat(y * 3 + pred, 3, "f1"),
        "roc_auc": roc_auc_stat(y2, probs),
    }
    whole = _whole(n, samples, 9)
    # Small blocks so the lazy pass really draws many times.
    monkeypatch.setattr(bootstrap, "_MAX_BLOCK_ELEMENTS", 7 * n)
    lazy = RowResamples(n, samples, 9, cache_elements=0)
    many = replicates_many(stats, lazy)
    for name, stat in stats.items():
        expected = replicates(stat, whole)
        assert np.array_equal(many[name], expected, equal_nan=True)
        assert np.array_equal(replicates(stat, lazy), expected, equal_nan=True)
        assert estimate(stat, lazy, 0.95) == estimate(stat, whole, 0.95)
    assert paired_difference(stats["accuracy"], stats["macro_f1"], lazy, 0.9) == paired_difference(
        stats["accuracy"], stats["macro_f1"], whole, 0.9
    )
    assert lazy._cache is None


def test_benchmark_arms_give_the_same_intervals() -> None:
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    if root not in sys.path:  # plain `pytest` puts tests/, not the repository root, on the path
        sys.path.insert(0, root)
    from benchmarks.intervals_memory import _arm

    whole, blocked = _arm("whole", 3000, 120), _arm("blocked", 3000, 120)
    assert whole["intervals"] == blocked["intervals"]
    acc = whole["intervals"]["accuracy"]
    assert acc["low"] < acc["value"] < acc["high"]
