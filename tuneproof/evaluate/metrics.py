"""Classification statistics written to run on a whole block of bootstrap resamples at once.

Each ``*_stat`` function returns a ``Statistic`` (see ``bootstrap``): given index sets ``[m, n]`` it
returns ``m`` values. They are hand-vectorised because calling scikit-learn once per resample costs
milliseconds each, which for 1000 resamples x 7 metrics x 3 models is minutes on one core. Their
full-sample values match scikit-learn's (``accuracy_score``, ``f1_score(average="macro")``,
``roc_auc_score``, ``log_loss``); the unit tests check that.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from tuneproof.evaluate.bootstrap import Statistic

MacroName = Literal["f1", "precision", "recall"]


def confusion_blocks(codes: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """Confusion matrices ``[m, k, k]`` (rows true, columns predicted) of each resample.

    ``codes`` is ``true * k + pred`` per row; one bincount over offset codes fills every matrix.
    """
    m = idx.shape[0]
    offsets = (np.arange(m, dtype=np.int64) * (k * k))[:, None]
    flat = np.bincount((codes[idx] + offsets).ravel(), minlength=m * k * k)
    return flat.reshape(m, k, k)


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall, F1 and support per class from confusion matrices ``[..., k, k]``.

    A ratio with a zero denominator is 0, as scikit-learn's ``zero_division`` default reports it.
    """
    tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(np.float64)
    support = cm.sum(axis=-1).astype(np.float64)
    predicted = cm.sum(axis=-2).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        # 2tp / (2tp + fp + fn) equals 2PR / (P + R) and needs no special case when P = R = 0.
        f1 = np.where(support + predicted > 0, 2.0 * tp / (support + predicted), 0.0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support, "predicted": predicted}


def macro_from_confusion(cm: np.ndarray, which: MacroName) -> np.ndarray:
    """Unweighted mean over the classes that occur in the labels or the predictions of each sample.

    Classes absent from both are left out, as scikit-learn does without ``labels=``; counting them as 0
    would let a rare class missing from a resample drag the macro score down for no reason.
    """
    scores = per_class_scores(cm)
    present = (scores["support"] + scores["predicted"]) > 0
    total = np.where(present, scores[which], 0.0).sum(axis=-1)
    return total / np.maximum(present.sum(axis=-1), 1)


def accuracy_stat(correct: np.ndarray) -> Statistic:
    def stat(idx: np.ndarray) -> np.ndarray:
        return correct[idx].mean(axis=1)

    return stat


def macro_stat(codes: np.ndarray, k: int, which: MacroName) -> Statistic:
    def stat(idx: np.ndarray) -> np.ndarray:
        return macro_from_confusion(confusion_blocks(codes, idx, k), which)

    return stat


def mean_stat(values: np.ndarray) -> Statistic:
    """Mean of a per-row quantity (per-row log loss)."""

    def stat(idx: np.ndarray) -> np.ndarray:
        return values[idx].mean(axis=1)

    return stat


def row_log_loss(y: np.ndarray, probs: np.ndarray) -> np.ndarray:
    # Clipped like scikit-learn (machine epsilon) so a zero probability costs a large, finite loss.
    p = probs[np.arange(y.size), y]
    return -np.log(np.clip(p, np.finfo(np.float64).eps, 1.0))


def confidence_bins(confidence: np.ndarray, bins: int) -> np.ndarray:
    """Bin number of each confidence for equal-width bins [i/bins, (i+1)/bins), the last closed at 1."""
    return np.minimum((confidence * bins).astype(np.int64), bins - 1)


def ece_stat(confidence: np.ndarray, correct: np.ndarray, bins: int) -> Statistic:
    """Expected calibration error: sum over bins of |accuracy - confidence| weighted by bin share."""
    bin_of = confidence_bins(confidence, bins)

    def stat(idx: np.ndarray) -> np.ndarray:
        m, n = idx.shape
        codes = (bin_of[idx] + (np.arange(m, dtype=np.int64) * bins)[:, None]).ravel()
        conf_sum = np.bincount(codes, weights=confidence[idx].ravel(), minlength=m * bins)
        hit_sum = np.bincount(codes, weights=correct[idx].ravel(), minlength=m * bins)
        # count_b * |acc_b - conf_b| = |hits_b - conf_sum_b|, so no division by empty bins is needed.
        return np.abs(hit_sum - conf_sum).reshape(m, bins).sum(axis=1) / n

    return stat


def resample_counts(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each original row occurs in each resample: ``[m, n]``."""
    m = idx.shape[0]
    offsets = (np.arange(m, dtype=np.int64) * n)[:, None]
    return np.bincount((idx + offsets).ravel(), minlength=m * n).reshape(m, n).astype(np.float64)


class _RankedScores:
    """One class's scores sorted once, with ties grouped, for weighted Mann-Whitney AUC.

    Sorting per resample would cost a sort of ``[m, n]`` per class; instead each resample is a vector
    of row multiplicities and AUC becomes a weighted sum over the once-sorted tie groups.
    """

    def __init__(self, scores: np.ndarray, positive: np.ndarray) -> None:
        self.order = np.argsort(scores, kind="stable")
        sorted_scores = scores[self.order]
        self.starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
        self.positive = positive[self.order].astype(np.float64)

    def auc(self, counts: np.ndarray) -> np.ndarray:
        w = counts[:, self.order]
        pos = np.add.reduceat(w * self.positive, self.starts, axis=1)
        neg = np.add.reduceat(w * (1.0 - self.positive), self.starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg  # negatives scored strictly lower than each tie group
        wins = (pos * (below + 0.5 * neg)).sum(axis=1)  # a tie counts half, as in the rank formula
        pairs = pos.sum(axis=1) * neg.sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(pairs > 0, wins / pairs, np.nan)


def roc_auc_stat(y: np.ndarray, probs: np.ndarray) -> Statistic:
    """Binary: AUC of the positive-class (id 1) probability. More classes: one-vs-rest macro average.

    NaN on a resample where some class is absent, where AUC is undefined; the bootstrap skips it.
    """
    k = probs.shape[1]
    classes = [1] if k == 2 else list(range(k))
    ranked = [_RankedScores(probs[:, c], y == c) for c in classes]

    def stat(idx: np.ndarray) -> np.ndarray:
        counts = resample_counts(idx, y.size)
        # Any NaN class makes the mean NaN, which is what "undefined on this resample" should be.
        return np.mean([r.auc(counts) for r in ranked], axis=0)

    return stat
