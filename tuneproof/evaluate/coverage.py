"""Coverage simulation: how often the evaluation's 95% intervals contain the true value.

Synthetic predictions are drawn from a process whose true metric is known in closed form, the
evaluation's own statistics and bootstrap are run on each draw, and the share of intervals that
contain the truth is counted. With ``R`` repetitions the share has a standard error of about
``sqrt(0.95 x 0.05 / R)`` (0.011 at R = 400), so 95% and 90% are four standard errors apart.

Scenarios (all binary, which is where a rare class makes F1 skewed):

* ``accuracy``: each row right with probability ``p``; truth ``p``.
* ``macro_f1``: a class of share ``rare`` and a classifier with fixed true- and false-positive
  rates; truth is the population macro-F1 (each class's ``2TP / (2TP + FP + FN)`` in expectation).
* ``paired_difference``: two models right on each row with probabilities ``p_a`` and ``p_b``,
  correlated (they share most of their errors); truth ``p_a - p_b``.
* any of them with ``clusters``: the rows come in clusters of equal size whose accuracy varies
  (a logit-normal cluster effect of standard deviation ``cluster_sd``); truth is the mean over the
  population of clusters, computed once by Monte Carlo with a million clusters.

Used by ``benchmarks/coverage.py`` (the full table in docs/statistics.md) and, small, by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import expit, logit

from tuneproof.evaluate.bca import bca_interval, jackknife, jackknife_units
from tuneproof.evaluate.bootstrap import (
    Resamples,
    Statistic,
    full_sample,
    percentile_interval,
    replicates,
    row_resamples,
)
from tuneproof.evaluate.cluster_bootstrap import cluster_bootstrap_indices
from tuneproof.evaluate.metrics import accuracy_stat, macro_stat

Metric = Literal["accuracy", "macro_f1", "paired_difference"]
Resampling = Literal["row", "cluster"]
Method = Literal["percentile", "bca"]


@dataclass(frozen=True)
class Scenario:
    metric: Metric
    n: int
    clusters: int | None = None  # number of equal-size clusters; None for independent rows
    p: float = 0.8  # accuracy (model A's for the paired difference)
    p_b: float = 0.75  # model B's accuracy, paired difference only
    rare: float = 0.1  # share of the positive class, macro_f1 only
    tpr: float = 0.7
    fpr: float = 0.05
    cluster_sd: float = 1.0

    @property
    def name(self) -> str:
        extra = f", {self.clusters} clusters" if self.clusters else ""
        if self.metric == "macro_f1":
            extra += f", rare class {self.rare:.0%}"
        return f"{self.metric} n={self.n}{extra}"


def _f1(tp: float, fp: float, fn: float) -> float:
    return 2 * tp / (2 * tp + fp + fn)


def true_value(s: Scenario) -> float:
    if s.metric == "macro_f1":
        tp, fn = s.rare * s.tpr, s.rare * (1 - s.tpr)
        fp, tn = (1 - s.rare) * s.fpr, (1 - s.rare) * (1 - s.fpr)
        return 0.5 * (_f1(tp, fp, fn) + _f1(tn, fn, fp))
    if s.clusters:
        # Each model's cluster effect has the same distribution; their correlation changes the
        # spread of the difference, not its mean, so the two means are computed apart.
        z = np.random.default_rng(0).standard_normal(1_000_000) * s.cluster_sd
        mean_a = float(expit(logit(s.p) + z).mean())
        if s.metric == "accuracy":
            return mean_a
        return mean_a - float(expit(logit(s.p_b) + z).mean())
    return s.p if s.metric == "accuracy" else s.p - s.p_b


# Correlation of the two models' cluster effects in the paired scenario: they find the same movies
# hard, but not to the same degree, so the difference itself varies from cluster to cluster.
CLUSTER_EFFECT_CORRELATION = 0.5


def _cluster_effects(s: Scenario, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    assert s.clusters is not None
    z = rng.standard_normal(s.clusters)
    other = rng.standard_normal(s.clusters)
    rho = CLUSTER_EFFECT_CORRELATION
    return z * s.cluster_sd, (rho * z + np.sqrt(1 - rho**2) * other) * s.cluster_sd


def draw(s: Scenario, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """One synthetic test split: the per-row arrays the statistics need, and the cluster ids."""
    if s.metric == "macro_f1":
        y = (rng.random(s.n) < s.rare).astype(np.int64)
        pred = np.where(y == 1, rng.random(s.n) < s.tpr, rng.random(s.n) < s.fpr).astype(np.int64)
        return {"codes": y * 2 + pred}, None
    codes: np.ndarray | None = None
    pa, pb = np.full(s.n, s.p), np.full(s.n, s.p_b)
    if s.clusters:
        codes = np.repeat(np.arange(s.clusters), s.n // s.clusters)
        za, zb = _cluster_effects(s, rng)
        pa, pb = expit(logit(s.p) + za)[codes], expit(logit(s.p_b) + zb)[codes]
    if s.metric == "accuracy":
        return {"a": (rng.random(s.n) < pa).astype(np.float64)}, codes
    # Paired: one uniform per row decides both models, so they share their hardest rows' errors.
    u = rng.random(s.n)
    noise = rng.random(s.n) < 0.3  # B re-draws 30% of rows independently: imperfect correlation
    b_u = np.where(noise, rng.random(s.n), u)
    return {"a": (u < pa).astype(np.float64), "b": (b_u < pb).astype(np.float64)}, codes


def _resamples(n: int, codes: np.ndarray | None, how: Resampling, samples: int, seed: int) -> Resamples:
    if how == "cluster" and codes is not None:
        return cluster_bootstrap_indices(codes, samples, seed)
    return row_resamples(n, samples, seed)


def _difference(a: Statistic, b: Statistic) -> Statistic:
    def stat(idx: np.ndarray) -> np.ndarray:
        return a(idx) - b(idx)

    return stat


def interval_once(
    s: Scenario,
    rng: np.random.Generator,
    how: Resampling,
    samples: int,
    confidence: float,
    seed: int,
    method: Method = "percentile",
) -> tuple[float, float]:
    arrays, codes = draw(s, rng)
    idx = _resamples(s.n, codes, how, samples, seed)
    if s.metric == "macro_f1":
        stat = macro_stat(arrays["codes"], 2, "f1")
    elif s.metric == "accuracy":
        stat = accuracy_stat(arrays["a"])
    else:
        stat = _difference(accuracy_stat(arrays["a"]), accuracy_stat(arrays["b"]))
    reps = replicates(stat, idx)
    if method == "percentile":
        return percentile_interval(reps, confidence)
    units = jackknife_units(s.n, codes if how == "cluster" else None)
    point = float(stat(full_sample(s.n))[0])
    return bca_interval(point, reps, jackknife(stat, s.n, units), confidence)


def coverage(
    s: Scenario,
    repetitions: int,
    how: Resampling = "row",
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    method: Method = "percentile",
) -> float:
    """Share of ``repetitions`` intervals (each on a fresh synthetic split) that contain the truth."""
    truth = true_value(s)
    rng = np.random.default_rng(seed)
    hits = 0
    for r in range(repetitions):
        low, high = interval_once(s, rng, how, samples, confidence, seed + 1 + r, method)
        hits += int(low <= truth <= high)
    return hits / repetitions
