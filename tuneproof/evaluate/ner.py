"""Entity-level scores for tagging with sentence-level bootstrap intervals: the NER ``metrics.json``.

Entities are read with seqeval's strict mode (IOB2): an entity counts only when its type and both
boundaries match exactly, and a predicted I- tag that does not continue an entity of its type is not
an entity at all. Entity counts add up over sentences, so each sentence's true positives, predicted
and gold entities are counted once per type and every resample is a sum over the resampled
sentences; the full-sample values equal seqeval's ``precision_score`` / ``recall_score`` /
``f1_score(mode="strict", scheme=IOB2)`` (the unit tests check that).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tuneproof.evaluate.bootstrap import Statistic, row_resamples
from tuneproof.evaluate.intervals import Replicates, compare, json_float, score, slice_rows
from tuneproof.evaluate.row_resamples import RowResamples
from tuneproof.protocol.schema import EvaluateSpec

SCALAR_METRICS = ("f1", "precision", "recall", "macro_f1")
PER_ENTITY_STATS = ("precision", "recall", "f1", "support")
SLICE_METRICS = ("f1", "precision", "recall")


def ner_metric_names(types: Sequence[str] | None = None) -> list[str]:
    names = list(SCALAR_METRICS)
    for t in types if types else ["*"]:
        names += [f"per_entity.{t}.{s}" for s in PER_ENTITY_STATS]
    return names


def entities(sentences: Sequence[Sequence[str]]) -> list[set[tuple[int, int, str]]]:
    """Strict IOB2 entities ``(start, end, type)`` of each sentence."""
    from seqeval.scheme import IOB2, Entities

    found = Entities([list(s) for s in sentences], IOB2).entities
    return [{(e.start, e.end, e.tag) for e in sent} for sent in found]


class SentenceCounts:
    """Per-sentence, per-type counts ``[n, k]`` of true positives, predicted and gold entities."""

    def __init__(
        self,
        gold: list[set[tuple[int, int, str]]],
        pred: list[set[tuple[int, int, str]]],
        types: Sequence[str],
    ) -> None:
        col = {t: j for j, t in enumerate(types)}
        n, k = len(gold), len(types)
        self.tp = np.zeros((n, k), dtype=np.int64)
        self.pred = np.zeros((n, k), dtype=np.int64)
        self.true = np.zeros((n, k), dtype=np.int64)
        for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
            for _, _, t in g:
                self.true[i, col[t]] += 1
            for _, _, t in p:
                self.pred[i, col[t]] += 1
            for _, _, t in g & p:
                self.tp[i, col[t]] += 1


def _prf(tp: np.ndarray, pred: np.ndarray, true: np.ndarray, which: str) -> np.ndarray:
    # A zero denominator gives 0, as seqeval reports it (with a warning we do not need).
    with np.errstate(divide="ignore", invalid="ignore"):
        if which == "precision":
            return np.where(pred > 0, tp / pred, 0.0)
        if which == "recall":
            return np.where(true > 0, tp / true, 0.0)
        return np.where(pred + true > 0, 2.0 * tp / (pred + true), 0.0)


def _sum_stat(c: SentenceCounts, col: int | None, which: str) -> Statistic:
    """Micro (``col`` None) or one type's precision/recall/F1 of each resample."""
    tp, pred, true = (a.sum(axis=1) if col is None else a[:, col] for a in (c.tp, c.pred, c.true))

    def stat(idx: np.ndarray) -> np.ndarray:
        return _prf(tp[idx].sum(axis=1), pred[idx].sum(axis=1), true[idx].sum(axis=1), which)

    return stat


def _macro_stat(c: SentenceCounts) -> Statistic:
    """Mean F1 over the types that occur in the gold or the predicted entities of each resample."""

    def stat(idx: np.ndarray) -> np.ndarray:
        tp, pred, true = (
            np.stack([a[:, j][idx].sum(axis=1) for j in range(a.shape[1])], axis=1)
            for a in (c.tp, c.pred, c.true)
        )
        present = (pred + true) > 0
        f1 = np.where(present, _prf(tp, pred, true, "f1"), 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(present.any(axis=1), f1.sum(axis=1) / present.sum(axis=1), np.nan)

    return stat


def _score_model(
    c: SentenceCounts, types: Sequence[str], idx: RowResamples, confidence: float
) -> tuple[dict[str, Any], Replicates]:
    stats: dict[str, Statistic] = {m: _sum_stat(c, None, m) for m in ("f1", "precision", "recall")}
    stats["macro_f1"] = _macro_stat(c)
    block, reps = score(stats, idx, confidence)
    per: dict[str, Any] = {}
    for j, t in enumerate(types):
        sub, _ = score({m: _sum_stat(c, j, m) for m in ("precision", "recall", "f1")}, idx, confidence)
        per[t] = {**sub, "support": int(c.true[:, j].sum()), "predicted": int(c.pred[:, j].sum())}
    block["per_entity"] = per
    return block, reps


def evaluate_ner(
    gold: Sequence[Sequence[str]],
    predicted: Sequence[Sequence[str]],
    baselines: Mapping[str, Sequence[Sequence[str]]],
    spec: EvaluateSpec,
    seed: int,
    slices: Mapping[str, np.ndarray] | None = None,
    validation: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Strict entity-level metrics for the model and each baseline with intervals over resampled
    sentences (the same resamples for every model, so the differences are paired).

    Row ``i`` of every argument is the same test sentence, as IOB2 tag lists of equal length.
    """
    n = len(gold)
    if n == 0:
        raise ValueError("cannot evaluate on an empty test split")
    for name, seqs in [("model", predicted), *baselines.items()]:
        if len(seqs) != n or any(len(p) != len(g) for p, g in zip(seqs, gold, strict=True)):
            raise ValueError(f"{name}: predictions must have one tag per gold tag in every sentence")
    gold_ents = entities(gold)
    pred_ents = {"model": entities(predicted), **{b: entities(s) for b, s in baselines.items()}}
    # Types from the gold and every prediction: a type only ever predicted still costs precision.
    types = sorted({t for s in [gold_ents, *pred_ents.values()] for sent in s for _, _, t in sent})
    counts = {name: SentenceCounts(gold_ents, p, types) for name, p in pred_ents.items()}
    idx = row_resamples(n, spec.bootstrap_samples, seed)
    model, model_reps = _score_model(counts["model"], types, idx, spec.confidence)
    baseline_blocks: dict[str, Any] = {}
    comparisons: dict[str, Any] = {}
    for name in baselines:
        block, reps = _score_model(counts[name], types, idx, spec.confidence)
        baseline_blocks[name] = block
        comparisons[name] = compare(model_reps, reps, SCALAR_METRICS, spec.confidence)
    out_slices = []
    c = counts["model"]
    for name, rows in slice_rows(slices or {}, n):
        r = rows[None, :]
        metrics = {m: json_float(float(_sum_stat(c, None, m)(r)[0])) for m in SLICE_METRICS}
        out_slices.append({"name": name, "n": int(rows.size), "metrics": metrics})
    return {
        "task": "token_classification",
        "split": "test",
        "n": n,
        "n_words": int(sum(len(g) for g in gold)),
        "unit": "sentence",
        "scheme": "IOB2, seqeval strict mode",
        "labels": types,
        "confidence": spec.confidence,
        "bootstrap_samples": spec.bootstrap_samples,
        "model": model,
        "baselines": baseline_blocks,
        "comparisons": comparisons,
        "slices": out_slices,
        "validation": validation,
        **(extra or {}),
    }


__all__ = [
    "PER_ENTITY_STATS",
    "SCALAR_METRICS",
    "SLICE_METRICS",
    "entities",
    "evaluate_ner",
    "ner_metric_names",
]
