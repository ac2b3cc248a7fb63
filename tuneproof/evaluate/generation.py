"""Language-model and generation metrics with bootstrap intervals, paired against baselines.

Every metric is a :data:`~tuneproof.evaluate.bootstrap.Statistic` over per-example quantities, so the
model and each baseline are scored on the same resampled rows and their differences are paired:

- ``loss``/``perplexity``: token-weighted, i.e. ``sum(NLL) / sum(tokens)`` over the resampled examples
  (and its ``exp``), which is what perplexity over a corpus means; the mean of per-example
  perplexities would over-weight short examples.
- ``exact_match``: share of generations equal to the reference after light normalisation.
- ``rouge_l``: mean per-example ROUGE-L F1 (rouge-score, Porter stemming), on a 0-1 scale.
- ``chrf`` and ``bleu``: sacrebleu *corpus* scores (0-100) recomputed on each resample from summed
  per-example sufficient statistics; the mean of sentence scores would be a different, noisier metric.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tuneproof.evaluate.bootstrap import (
    Statistic,
    full_sample,
    replicates_many,
    row_resamples,
    summarize,
    summarize_difference,
)

LM_METRICS = ("loss", "perplexity")
GENERATION_METRICS = ("exact_match", "rouge_l", "chrf", "bleu")
_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")
_WS = re.compile(r"\s+")


def normalize_answer(text: str) -> str:
    """Case-folded, NFKC, punctuation removed, whitespace collapsed (SQuAD-style, without article rules,
    which are English-only)."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _WS.sub(" ", _PUNCT.sub(" ", text)).strip()


def exact_match_scores(preds: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    return np.array(
        [float(normalize_answer(p) == normalize_answer(r)) for p, r in zip(preds, refs, strict=True)]
    )


def rouge_l_scores(preds: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return np.array(
        [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs, strict=True)], dtype=np.float64
    )


def _sacrebleu_metric(name: str) -> Any:
    from sacrebleu.metrics import BLEU, CHRF

    return BLEU() if name == "bleu" else CHRF()


def corpus_stats(name: str, preds: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """Per-example sufficient statistics ``[n, k]`` of sacrebleu's corpus ``bleu`` or ``chrf``."""
    metric = _sacrebleu_metric(name)
    stats = metric._extract_corpus_statistics(list(preds), [list(refs)])
    return np.asarray(stats, dtype=np.float64)


def corpus_stat(name: str, stats: np.ndarray) -> Statistic:
    """sacrebleu's corpus score on each resample, from the summed statistics of its rows."""
    metric = _sacrebleu_metric(name)

    def stat(idx: np.ndarray) -> np.ndarray:
        # One small sum per resample: gathering [m, n, k] at once would cost gigabytes for large n.
        return np.array(
            [
                metric._compute_score_from_stats([float(x) for x in stats[row].sum(axis=0)]).score
                for row in idx
            ]
        )

    return stat


def corpus_score(name: str, preds: Sequence[str], refs: Sequence[str]) -> float:
    return float(corpus_stat(name, corpus_stats(name, preds, refs))(full_sample(len(preds)))[0])


def mean_nll_stat(nll: np.ndarray, tokens: np.ndarray) -> Statistic:
    def stat(idx: np.ndarray) -> np.ndarray:
        total = tokens[idx].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(total > 0, nll[idx].sum(axis=1) / np.maximum(total, 1), np.nan)

    return stat


def perplexity_stat(nll: np.ndarray, tokens: np.ndarray) -> Statistic:
    mean = mean_nll_stat(nll, tokens)

    def stat(idx: np.ndarray) -> np.ndarray:
        return np.exp(mean(idx))

    return stat


def lm_statistics(nll: np.ndarray, tokens: np.ndarray, prefix: str = "") -> dict[str, Statistic]:
    nll, tokens = np.asarray(nll, dtype=np.float64), np.asarray(tokens, dtype=np.float64)
    return {f"{prefix}loss": mean_nll_stat(nll, tokens), f"{prefix}perplexity": perplexity_stat(nll, tokens)}


def generation_statistics(preds: Sequence[str], refs: Sequence[str]) -> dict[str, Statistic]:
    em, rl = exact_match_scores(preds, refs), rouge_l_scores(preds, refs)
    return {
        "exact_match": lambda idx: em[idx].mean(axis=1),
        "rouge_l": lambda idx: rl[idx].mean(axis=1),
        "chrf": corpus_stat("chrf", corpus_stats("chrf", preds, refs)),
        "bleu": corpus_stat("bleu", corpus_stats("bleu", preds, refs)),
    }


def per_example_scores(preds: Sequence[str], refs: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-example exact match and ROUGE-L, for predictions files and the report's samples."""
    return {"exact_match": exact_match_scores(preds, refs), "rouge_l": rouge_l_scores(preds, refs)}


def interval_group(
    n: int,
    model: Mapping[str, Statistic],
    baselines: Mapping[str, Mapping[str, Statistic]],
    confidence: float,
    samples: int,
    seed: int,
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Intervals for one group of metrics over the same ``n`` rows, with paired differences.

    Returns (model block, baseline blocks, comparisons model minus baseline). The resamples are drawn
    once from ``seed`` and shared by the model and every baseline, which is what makes them paired.
    """
    idx = row_resamples(n, samples, seed)
    full = full_sample(n)

    def point_reps(stats: Mapping[str, Statistic]) -> dict[str, tuple[float, np.ndarray]]:
        many = replicates_many(stats, idx)
        return {k: (float(s(full)[0]), many[k]) for k, s in stats.items()}

    mine = point_reps(model)
    model_block = {k: summarize(p, r, confidence) for k, (p, r) in mine.items()}
    base_blocks: dict[str, dict[str, Any]] = {}
    comparisons: dict[str, dict[str, Any]] = {}
    for name, stats in baselines.items():
        theirs = point_reps(stats)
        base_blocks[name] = {k: summarize(p, r, confidence) for k, (p, r) in theirs.items()}
        comparisons[name] = {
            k: summarize_difference(mine[k][0], mine[k][1], theirs[k][0], theirs[k][1], confidence)
            for k in mine
            if k in theirs
        }
    return model_block, base_blocks, comparisons


def merge_groups(
    groups: Sequence[tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, dict[str, Any]]]],
) -> dict[str, Any]:
    """Combine :func:`interval_group` results into the ``model``/``baselines``/``comparisons`` layout."""
    out: dict[str, Any] = {"model": {}, "baselines": {}, "comparisons": {}}
    for model, bases, comps in groups:
        out["model"].update(model)
        for name, block in bases.items():
            out["baselines"].setdefault(name, {}).update(block)
        for name, block in comps.items():
            out["comparisons"].setdefault(name, {}).update(block)
    return out


__all__ = [
    "GENERATION_METRICS",
    "LM_METRICS",
    "corpus_score",
    "corpus_stat",
    "corpus_stats",
    "exact_match_scores",
    "generation_statistics",
    "interval_group",
    "lm_statistics",
    "merge_groups",
    "normalize_answer",
    "per_example_scores",
    "perplexity_stat",
    "rouge_l_scores",
]
