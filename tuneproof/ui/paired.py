"""The paired statistics of two runs' test predictions, per task: what "is B better than A" is judged on.

Each task's per-row predictions file (``predictions/test.parquet``) holds what its metrics are
computed from; this module rebuilds the same statistics the run's evaluation used (the functions of
tuneproof/evaluate/, not copies) for both runs on the rows they share, so both sides see the same
bootstrap resamples and the difference is paired.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tuneproof.evaluate.bootstrap import Statistic


@dataclass(frozen=True)
class StatGroup:
    """Statistics of both runs over the same ``n`` shared rows (one bootstrap per group)."""

    n: int
    a: dict[str, Statistic]
    b: dict[str, Statistic]


@dataclass(frozen=True)
class TaskRows:
    key: str  # the column that names a test row in both files
    truth: tuple[str, ...]  # columns that must agree row by row for the rows to be the same
    groups: Callable[[pd.DataFrame], list[StatGroup]]


def _side(joined: pd.DataFrame, column: str, side: str) -> pd.Series:
    return joined[f"{column}_{side}"]


def _single_label(joined: pd.DataFrame) -> list[StatGroup]:
    from tuneproof.evaluate.metrics import accuracy_stat, macro_stat

    labels = sorted({str(x) for c in ("label_a", "pred_a", "pred_b") for x in joined[c]})
    code = {label: i for i, label in enumerate(labels)}
    y = joined["label_a"].astype(str).map(code).to_numpy(np.int64)
    k = len(labels)

    def stats(side: str) -> dict[str, Statistic]:
        pred = _side(joined, "pred", side).astype(str).map(code).to_numpy(np.int64)
        return {
            "accuracy": accuracy_stat((pred == y).astype(np.float64)),
            "macro_f1": macro_stat(y * k + pred, k, "f1"),
        }

    return [StatGroup(len(joined), stats("a"), stats("b"))]


def _regression(joined: pd.DataFrame) -> list[StatGroup]:
    from tuneproof.evaluate.regression import mae_stat, r2_stat, rmse_stat, spearman_stat

    y = joined["label_a"].to_numpy(np.float64)

    def stats(side: str) -> dict[str, Statistic]:
        pred = _side(joined, "pred", side).to_numpy(np.float64)
        err = pred - y
        return {
            "mae": mae_stat(err),
            "rmse": rmse_stat(err),
            "r2": r2_stat(y, pred),
            "spearman": spearman_stat(y, pred),
        }

    return [StatGroup(len(joined), stats("a"), stats("b"))]


def _tags(values: pd.Series) -> list[list[str]]:
    return [[str(t) for t in v] for v in values]


def _ner(joined: pd.DataFrame) -> list[StatGroup]:
    # The NER evaluation's own per-sentence counts and statistics (module-private there, reused here
    # so a comparison cannot drift from how the run scored itself).
    from tuneproof.evaluate.ner import SentenceCounts, _macro_stat, _sum_stat, entities

    gold = entities(_tags(joined["label_a"]))
    pred = {s: entities(_tags(_side(joined, "pred", s))) for s in ("a", "b")}
    types = sorted({t for ents in [gold, *pred.values()] for sent in ents for _, _, t in sent})

    def stats(side: str) -> dict[str, Statistic]:
        c = SentenceCounts(gold, pred[side], types)
        out: dict[str, Statistic] = {m: _sum_stat(c, None, m) for m in ("f1", "precision", "recall")}
        out["macro_f1"] = _macro_stat(c)
        return out

    return [StatGroup(len(joined), stats("a"), stats("b"))]


def _multilabel(joined: pd.DataFrame) -> list[StatGroup]:
    from tuneproof.evaluate.multilabel import _Counts, _stats

    labels = sorted({str(x) for c in ("label_a", "pred_a", "pred_b") for row in joined[c] for x in row})
    col = {label: j for j, label in enumerate(labels)}

    def matrix(values: pd.Series) -> np.ndarray:
        m = np.zeros((len(values), len(labels)), dtype=bool)
        for i, row in enumerate(values):
            for x in row:
                m[i, col[str(x)]] = True
        return m

    y = matrix(joined["label_a"])
    return [
        StatGroup(
            len(joined),
            _stats(_Counts(y, matrix(joined["pred_a"]))),
            _stats(_Counts(y, matrix(joined["pred_b"]))),
        )
    ]


def _lm_group(joined: pd.DataFrame) -> StatGroup | None:
    from tuneproof.evaluate.generation import lm_statistics

    tokens_a, tokens_b = joined["tokens_a"].to_numpy(np.float64), joined["tokens_b"].to_numpy(np.float64)
    if not np.array_equal(tokens_a, tokens_b):
        return None  # different tokenizers: per-token losses are not on one scale
    return StatGroup(
        len(joined),
        lm_statistics(joined["nll_a"].to_numpy(np.float64), tokens_a),
        lm_statistics(joined["nll_b"].to_numpy(np.float64), tokens_b),
    )


def _generative(joined: pd.DataFrame) -> list[StatGroup]:
    from tuneproof.evaluate.generation import generation_statistics

    groups = [g for g in [_lm_group(joined)] if g is not None]
    both = joined[joined["generation_a"].notna() & joined["generation_b"].notna()]
    if len(both):
        refs = [str(r) for r in both["reference_a"]]
        groups.append(
            StatGroup(
                len(both),
                generation_statistics([str(g) for g in both["generation_a"]], refs),
                generation_statistics([str(g) for g in both["generation_b"]], refs),
            )
        )
    return groups


def _dapt(joined: pd.DataFrame) -> list[StatGroup]:
    from tuneproof.evaluate.generation import lm_statistics

    groups = []
    for which, prefix in (("test", ""), ("general", "general_")):
        rows = joined[joined["set_a"] == which]
        if len(rows):
            groups.append(
                StatGroup(
                    len(rows),
                    lm_statistics(rows["nll_a"].to_numpy(np.float64), rows["tokens_a"].to_numpy(), prefix),
                    lm_statistics(rows["nll_b"].to_numpy(np.float64), rows["tokens_b"].to_numpy(), prefix),
                )
            )
    return groups


TASK_ROWS: dict[str, TaskRows] = {
    "classification": TaskRows("row_id", ("label",), _single_label),
    "image_classification": TaskRows("row_id", ("label",), _single_label),
    "regression": TaskRows("row_id", ("label",), _regression),
    "token_classification": TaskRows("row_id", ("label",), _ner),
    "multilabel": TaskRows("row_id", ("label",), _multilabel),
    "sft": TaskRows("row_id", ("reference",), _generative),
    "seq2seq": TaskRows("row_id", ("reference",), _generative),
    "dapt": TaskRows("block", ("set", "tokens"), _dapt),
}


def _same(a: pd.Series, b: pd.Series) -> bool:
    def norm(x: Any) -> Any:
        return tuple(norm(v) for v in x) if isinstance(x, list | tuple | np.ndarray) else x

    return all(norm(x) == norm(y) for x, y in zip(a, b, strict=True))


def join_predictions(task: str, a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame | None, str | None]:
    """The two files' rows side by side (columns suffixed ``_a`` / ``_b``), or why they cannot be."""
    rows = TASK_ROWS.get(task)
    if rows is None:
        return None, f"no paired comparison is defined for {task} runs"
    joined = a.merge(b, on=rows.key, suffixes=("_a", "_b"))
    if len(joined) != len(a) or len(joined) != len(b):
        return None, "the prediction files do not hold the same test rows"
    for column in rows.truth:
        if not _same(joined[f"{column}_a"], joined[f"{column}_b"]):
            return None, f"the prediction files' {column!r} differ on the same rows"
    return joined, None


def stat_groups(task: str, joined: pd.DataFrame) -> list[StatGroup]:
    return TASK_ROWS[task].groups(joined)
