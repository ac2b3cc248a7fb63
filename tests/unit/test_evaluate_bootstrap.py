"""The shared-resample percentile bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from tuneproof.evaluate.bootstrap import (
    bootstrap_indices,
    estimate,
    interval,
    paired_difference,
    per_resample,
    percentile_interval,
    replicates,
)
from tuneproof.evaluate.metrics import accuracy_stat


def _correct(n: int, rate: float, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(n) < rate).astype(np.float64)


def test_indices_are_seeded_shaped_and_in_range() -> None:
    a = bootstrap_indices(50, 200, seed=7)
    assert a.shape == (200, 50)
    assert a.min() >= 0 and a.max() < 50
    assert np.array_equal(a, bootstrap_indices(50, 200, seed=7))
    assert not np.array_equal(a, bootstrap_indices(50, 200, seed=8))
    with pytest.raises(ValueError):
        bootstrap_indices(0, 10, seed=1)


def test_interval_contains_point_and_narrows_with_n() -> None:
    widths = []
    for n in (100, 2000):
        stat = accuracy_stat(_correct(n, 0.8, seed=n))
        est = estimate(stat, bootstrap_indices(n, 1000, seed=3), 0.95)
        assert est["low"] is not None and est["high"] is not None and est["value"] is not None
        assert est["low"] <= est["value"] <= est["high"]
        widths.append(est["high"] - est["low"])
    # Width scales like 1/sqrt(n): 20x the rows should shrink it about 4.5x; demand at least 3x.
    assert widths[1] < widths[0] / 3


def test_wider_confidence_gives_wider_interval() -> None:
    stat = accuracy_stat(_correct(300, 0.7, seed=1))
    idx = bootstrap_indices(300, 1000, seed=2)
    lo90, hi90 = interval(stat, idx, 0.90)
    lo99, hi99 = interval(stat, idx, 0.99)
    assert lo99 <= lo90 and hi90 <= hi99


def test_paired_difference_of_a_statistic_with_itself_is_exactly_zero() -> None:
    stat = accuracy_stat(_correct(500, 0.6, seed=4))
    d = paired_difference(stat, stat, bootstrap_indices(500, 1000, seed=5), 0.95)
    assert d == {"diff": 0.0, "low": 0.0, "high": 0.0}


def test_pairing_makes_the_difference_narrower_than_either_interval() -> None:
    # Model B is model A with 5% of its errors fixed: unpaired intervals overlap heavily, but on
    # shared resamples the difference is strictly positive.
    a = _correct(400, 0.75, seed=6)
    b = a.copy()
    wrong = np.flatnonzero(a == 0)
    b[wrong[: len(wrong) // 5]] = 1.0
    idx = bootstrap_indices(400, 1000, seed=9)
    d = paired_difference(accuracy_stat(b), accuracy_stat(a), idx, 0.95)
    lo_a, hi_a = interval(accuracy_stat(a), idx, 0.95)
    assert d["low"] is not None and d["low"] > 0
    assert d["high"] is not None and d["high"] - d["low"] < hi_a - lo_a


def test_vectorised_and_looped_statistics_agree() -> None:
    correct = _correct(120, 0.5, seed=10)
    idx = bootstrap_indices(120, 300, seed=11)
    looped = per_resample(lambda rows: float(correct[rows].mean()))
    np.testing.assert_allclose(replicates(accuracy_stat(correct), idx), replicates(looped, idx), atol=1e-12)


def test_undefined_resamples_are_skipped_not_counted() -> None:
    values = np.array([np.nan, 1.0, 2.0, 3.0, np.nan])
    assert percentile_interval(values, 0.5) == pytest.approx((1.5, 2.5))
    low, high = percentile_interval(np.array([np.nan, np.nan]), 0.95)
    assert np.isnan(low) and np.isnan(high)
    stat = per_resample(lambda rows: float("nan"))
    assert estimate(stat, bootstrap_indices(5, 100, seed=1), 0.95) == {
        "value": None,
        "low": None,
        "high": None,
    }
