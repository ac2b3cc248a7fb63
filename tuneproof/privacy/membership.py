"""Loss-based membership inference (Yeom et al., 2018): can an attacker tell training rows from
held-out rows by the model's loss on them?

The score is minus each row's loss; the audit reports the ROC AUC of that score for "was this row
trained on" (0.5: losses reveal nothing; 1.0: every training row has a lower loss than every held-out
row) with a bootstrap interval that resamples members and non-members separately, and the attacker's
best advantage (max TPR - FPR over thresholds). Per-row losses come from the task's own training
loss (``Task.loss_fn``) on one row at a time, so every task that trains can be audited the same way.

The AUC is computed with scikit-learn; the resampling is numpy, in the same percentile form as every
other interval tuneproof reports (``tuneproof.evaluate.bootstrap``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from tuneproof.evaluate.bootstrap import percentile_interval

Batch = dict[str, Any]


def per_row_losses(
    model: nn.Module,
    rows: Sequence[Batch],
    collate: Callable[[list[Batch]], Batch],
    loss_fn: Callable[[nn.Module, Batch], tuple[torch.Tensor, int]],
) -> np.ndarray:
    """The task's training loss on each row alone (mean over its terms: tokens, labels)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = np.empty(len(rows), dtype=np.float64)
    try:
        with torch.no_grad():
            for i, row in enumerate(rows):
                batch = collate([row])
                for key in [k for k in batch if k.startswith("_")]:  # the loop's bookkeeping counts
                    batch.pop(key)
                batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                total, count = loss_fn(model, batch)
                out[i] = float(total) / max(int(count), 1)
    finally:
        model.train(was_training)
    return out


def sample_rows(rows: Sequence[Batch], n: int, seed: int) -> list[Batch]:
    """Up to ``n`` rows drawn without replacement; resampled duplicates (``#dup`` ids) left out."""
    originals = [r for r in rows if not str(r.get("row_id", "")).endswith("#dup")]
    if len(originals) <= n:
        return list(originals)
    idx = np.sort(np.random.default_rng(seed).choice(len(originals), size=n, replace=False))
    return [originals[i] for i in idx]


def membership_auc(member_losses: np.ndarray, nonmember_losses: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    y = np.r_[np.ones(len(member_losses)), np.zeros(len(nonmember_losses))]
    return float(roc_auc_score(y, -np.r_[member_losses, nonmember_losses]))


def membership_advantage(member_losses: np.ndarray, nonmember_losses: np.ndarray) -> float:
    """The best threshold attacker's TPR - FPR (0: no better than guessing)."""
    from sklearn.metrics import roc_curve

    y = np.r_[np.ones(len(member_losses)), np.zeros(len(nonmember_losses))]
    fpr, tpr, _ = roc_curve(y, -np.r_[member_losses, nonmember_losses])
    return float(np.max(tpr - fpr))


def audit(
    member_losses: np.ndarray,
    nonmember_losses: np.ndarray,
    confidence: float,
    samples: int,
    seed: int,
) -> dict[str, Any]:
    """``{"membership_auc": {value, low, high}, "details": {...}}`` for the two loss samples."""
    if len(member_losses) < 2 or len(nonmember_losses) < 2:
        raise ValueError("the membership audit needs at least two training and two held-out rows")
    from scipy.stats import rankdata

    rng = np.random.default_rng([seed, 19])
    m, k = len(member_losses), len(nonmember_losses)
    scores = -np.r_[member_losses, nonmember_losses]
    reps = np.empty(samples, dtype=np.float64)
    for b in range(samples):
        # Members and non-members are resampled separately: each side is its own sample.
        s = np.r_[scores[rng.integers(0, m, m)], scores[m + rng.integers(0, k, k)]]
        ranks = rankdata(s)  # Mann-Whitney U: ties share their average rank, as in roc_auc_score
        reps[b] = (ranks[:m].sum() - m * (m + 1) / 2) / (m * k)
    point = membership_auc(member_losses, nonmember_losses)
    low, high = percentile_interval(reps, confidence)
    return {
        "membership_auc": {"value": point, "low": low, "high": high},
        "details": {
            "attack": "loss threshold (score = -loss), AUC over training vs held-out test rows",
            "members": m,
            "non_members": k,
            "advantage": membership_advantage(member_losses, nonmember_losses),
            "member_loss_mean": float(np.mean(member_losses)),
            "non_member_loss_mean": float(np.mean(nonmember_losses)),
            "member_loss_median": float(np.median(member_losses)),
            "non_member_loss_median": float(np.median(nonmember_losses)),
            "bootstrap_samples": samples,
            "confidence": confidence,
        },
    }
