"""Power before training: the smallest difference the test split can detect for each ``beats`` gate.

A ``beats`` gate passes when the lower bound of the paired difference clears ``by``. With a
standard error ``se`` of that difference, a model truly better by ``by + mde`` passes with
probability ``power``, where ``mde = (z[1 - a/2] + z[power]) x se`` (``a`` the per-gate level:
``1 - confidence``, divided by the number of gates when they are judged as a family, Bonferroni's
level being Holm's worst case). ``mde`` is the minimum detectable effect: a true difference smaller
than it is, more often than not, indistinguishable from none on this test split.

The model does not exist yet, so ``se`` is estimated from what does: the baseline's own scores on
the validation split (fitted on train; the test split is not read), bootstrapped as the
evaluation will bootstrap them (by cluster with ``evaluate.cluster_by``), scaled from the
validation split's size to the test split's (rows, or clusters), and turned into the standard error
of a paired difference under a stated correlation ``rho`` between the model's and the baseline's
per-row scores: ``se_diff = se x sqrt(2 (1 - rho))`` (``evaluate.power.correlation``; 0.5 by
default, so ``se_diff = se``). Without a validation split the assumption is the worst case of a
proportion, a per-row standard deviation of 0.5.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from tuneproof.evaluate.baselines import majority_probs, tfidf_logreg_probs
from tuneproof.evaluate.bootstrap import Resamples, replicates, row_resamples
from tuneproof.evaluate.cluster_bootstrap import ClusterResamples, cluster_bootstrap_indices, cluster_codes
from tuneproof.protocol.schema import Protocol

# Fewer resamples than the evaluation: only a standard error is needed, not the tails.
POWER_BOOTSTRAP = 400
WORST_CASE_ROW_SD = 0.5


def _units(df: pd.DataFrame, column: str | None) -> int:
    return int(df[column].nunique(dropna=False)) if column is not None else len(df)


def _baseline_probs(
    name: str, train: pd.DataFrame, val: pd.DataFrame, labels: list[str], seed: int
) -> np.ndarray:
    label2id = {lab: i for i, lab in enumerate(labels)}
    y_train = np.array([label2id[x] for x in train["label"]])
    if name == "majority":
        return majority_probs(y_train, len(val), len(labels))
    return tfidf_logreg_probs(train["text"].tolist(), y_train, val["text"].tolist(), len(labels), seed)


def minimum_detectable_effects(
    protocol: Protocol, splits: Mapping[str, pd.DataFrame], labels: list[str] | None = None
) -> dict[str, Any] | None:
    """``metrics.json``'s ``power`` section (also printed by ``validate``); None without ``beats`` gates.

    Classification only: the statistics are the evaluation's own (``_Scored``).
    """
    from tuneproof.evaluate.classification import _Scored

    beats = [(i, g) for i, g in enumerate(protocol.gates) if g.beats is not None]
    if not beats or protocol.task != "classification":
        return None
    spec, column = protocol.evaluate, protocol.evaluate.cluster_by
    train, test = splits["train"], splits["test"]
    val = splits.get("validation")
    labels = labels or list(protocol.data.labels or sorted(set(train["label"])))
    alpha = 1.0 - spec.confidence
    per_gate = alpha / len(protocol.gates) if spec.gate_family != "individual" else alpha
    z = float(norm.ppf(1.0 - per_gate / 2.0) + norm.ppf(spec.power.power))
    rho = spec.power.correlation
    test_units = _units(test, column)
    rows: list[dict[str, Any]] = []
    for i, gate in beats:
        assert gate.beats is not None
        entry: dict[str, Any] = {
            "gate": gate.label,
            "index": i,
            "metric": gate.metric,
            "baseline": gate.beats,
        }
        if val is not None and len(val) and gate.beats in ("majority", "tfidf_logreg"):
            probs = _baseline_probs(gate.beats, train, val, labels, protocol.seed)
            label2id = {lab: j for j, lab in enumerate(labels)}
            y = np.array([label2id[x] for x in val["label"]])
            stat = _Scored(y, probs, spec.calibration_bins).stats.get(gate.metric)
            if stat is None:
                continue
            idx: Resamples = (
                cluster_bootstrap_indices(cluster_codes(val[column].tolist()), POWER_BOOTSTRAP, protocol.seed)
                if column is not None
                else row_resamples(len(val), POWER_BOOTSTRAP, protocol.seed)
            )
            reps = replicates(stat, idx)
            val_units = idx.clusters if isinstance(idx, ClusterResamples) else len(val)
            se = float(np.nanstd(reps, ddof=1)) * math.sqrt(val_units / test_units)
            entry["source"] = (
                f"{gate.beats} fitted on train, bootstrapped on the validation split "
                f"({val_units} {'clusters' if column else 'rows'}), scaled to the test split"
            )
        else:
            se = WORST_CASE_ROW_SD / math.sqrt(test_units)
            entry["source"] = "assumed: per-row standard deviation 0.5 (the worst case of a proportion)"
        se_diff = se * math.sqrt(2.0 * (1.0 - rho))
        mde = z * se_diff
        entry.update(
            {
                "se_difference": se_diff,
                "mde": mde,
                "margin": gate.by,
                "needed_true_difference": gate.by + mde,
                "warning": None,
            }
        )
        if gate.by < mde:
            entry["warning"] = (
                f"gates[{i}] ({gate.label}): the margin {gate.by:g} is below the smallest difference the "
                f"test split can detect ({mde:.3g} at {spec.confidence:.0%} "
                f"with {spec.power.power:.0%} power); "
                f"a model must be truly better by about {gate.by + mde:.3g} to pass this gate reliably"
            )
        rows.append(entry)
    return {
        "test_units": test_units,
        "unit": "clusters" if column else "rows",
        "confidence": spec.confidence,
        "per_gate_level": 1.0 - per_gate,
        "power": spec.power.power,
        "correlation": rho,
        "gates": rows,
    }
