"""Suspected label errors: out-of-fold probabilities from a cheap model, then confident learning.

Every training row is scored by a model that never saw it (stratified K-fold cross-validation on
the training split): logistic regression on TF-IDF features, or on the base model's frozen sentence
embeddings (``features: embeddings``); cleanlab's ``find_label_issues`` (confident
learning) then flags the rows whose given label disagrees with those probabilities more than the
per-class noise it estimates allows. Validation and test rows are scored by the same kind of model
fitted on the whole training split and flagged the same way, but only ever reported: dropping them
would change what the metric measures, and their labels never influence what is trained on.

The confident-learning step is cleanlab's; only the cross-validation around it and the policy
(report, drop, fail) are written here.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tuneproof.data.frozen_embeddings import Embedder
from tuneproof.errors import LabelErrorsFound, Problem
from tuneproof.protocol.schema import LabelErrorsSpec

# C of the logistic regression: the tfidf_logreg baseline's, for the same reason (fixed, cheap).
_C = 4.0
# C on standardised frozen embeddings: the linear probe's (evaluate/linear_probe.py), fixed for the
# same reason; dense 384-d features overfit a few thousand rows at TF-IDF's weak regularisation.
_EMBEDDING_C = 0.5
# Below this many training texts, requiring each n-gram twice empties the vocabulary of toy sets.
_MIN_DF_2_FROM = 1000
# Rows named in a `fail` error; the data report lists up to the spec's `listed`.
ROWS_IN_ERROR = 20
EVALUATION_SPLITS = ("validation", "test")
FEATURE_NAMES = {
    "tfidf": "TF-IDF (word 1-2 grams)",
    "embeddings": "the base model's frozen sentence embeddings (mean-pooled, standardised)",
}
Recorder = Callable[[str, int, int, str, list[dict[str, Any]], int], None]


@dataclass
class Suspects:
    """The flagged rows of one split, most suspicious first, and how many rows were checked."""

    checked: int
    positions: np.ndarray  # positions in the split, ranked by label quality (lowest first)
    rows: list[dict[str, Any]]  # row_id, text, given, suggested, confidence, given_probability

    @property
    def rate(self) -> float:
        return len(self.positions) / self.checked if self.checked else 0.0


def _vectorizer(n: int) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(
        ngram_range=(1, 2), sublinear_tf=True, min_df=2 if n >= _MIN_DF_2_FROM else 1, dtype=np.float64
    )


def _classifier(seed: int, multi_label: bool, c: float = _C) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    clf = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    return OneVsRestClassifier(clf) if multi_label else clf


def _fit_predict(
    train_texts: Sequence[str],
    y: np.ndarray,
    texts: Sequence[str],
    k: int,
    seed: int,
    multi_label: bool,
    embed: Embedder | None = None,
) -> np.ndarray:
    """Probabilities ``[len(texts), k]`` (column j = class j) from a model fitted on the train rows:
    TF-IDF features, or ``embed``'s (frozen sentence embeddings, standardised) where given."""
    out = np.zeros((len(texts), k), dtype=np.float64)
    if not len(texts):
        return out
    if embed is None:
        vec = _vectorizer(len(train_texts))
        x = vec.fit_transform(list(train_texts))
        xt = vec.transform(list(texts))
        clf_c = _C
    else:
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(embed(train_texts))
        x, xt = scaler.transform(embed(train_texts)), scaler.transform(embed(texts))
        clf_c = _EMBEDDING_C
    if multi_label:
        # One-vs-rest treats a label that is always (or never) present as constant, without failing.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return np.asarray(_classifier(seed, True, clf_c).fit(x, y).predict_proba(xt), dtype=np.float64)
    classes = np.unique(y)
    if classes.size < 2:
        out[:, classes] = 1.0
        return out
    clf = _classifier(seed, False, clf_c).fit(x, y)
    out[:, clf.classes_] = clf.predict_proba(xt)
    return out


def out_of_fold_probs(
    texts: Sequence[str],
    y: np.ndarray,
    k: int,
    folds: int,
    seed: int,
    multi_label: bool = False,
    embed: Embedder | None = None,
) -> np.ndarray:
    """Each row's probabilities from a model fitted on the other folds (stratified where possible)."""
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(texts)
    probs = np.zeros((n, k), dtype=np.float64)
    if n < 2:  # nothing to hold out; the split-size guards refuse such a split anyway
        return probs
    if multi_label:
        splitter: Any = KFold(n_splits=min(folds, n), shuffle=True, random_state=seed)
        parts = splitter.split(np.zeros(n))
    else:
        counts = np.bincount(y)
        smallest = int(counts[counts > 0].min())
        if smallest >= 2:
            splitter = StratifiedKFold(n_splits=min(folds, smallest), shuffle=True, random_state=seed)
            parts = splitter.split(np.zeros(n), y)
        else:  # a class with one row cannot be in two folds; plain folds score it as unseen
            splitter = KFold(n_splits=min(folds, n), shuffle=True, random_state=seed)
            parts = splitter.split(np.zeros(n))
    arr = np.asarray(list(texts), dtype=object)
    for fit_idx, score_idx in parts:
        probs[score_idx] = _fit_predict(arr[fit_idx], y[fit_idx], arr[score_idx], k, seed, multi_label, embed)
    return probs


def flag(
    given: np.ndarray | list[list[int]], probs: np.ndarray, spec: LabelErrorsSpec, multi_label: bool
) -> np.ndarray:
    """Positions cleanlab flags, ranked by self-confidence (the most suspicious first)."""
    from cleanlab.filter import find_label_issues

    if len(probs) < 2:
        return np.array([], dtype=int)
    with warnings.catch_warnings():
        # cleanlab warns about classes absent from a small split; that is expected for test splits.
        warnings.simplefilter("ignore")
        idx = find_label_issues(
            given,
            probs,
            filter_by=spec.filter_by,
            return_indices_ranked_by="self_confidence",
            multi_label=multi_label,
        )
    return np.asarray(idx, dtype=int)


def _describe(
    df: pd.DataFrame, positions: np.ndarray, probs: np.ndarray, labels: list[str], multi_label: bool
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    col = {lab: j for j, lab in enumerate(labels)}
    for pos in positions:
        p = probs[pos]
        given = df["label"].iloc[pos]
        if multi_label:
            suggested: Any = [lab for j, lab in enumerate(labels) if p[j] >= 0.5]
            # The least likely of the given decisions: how sure the model is that the row is wrong.
            decided = [p[j] if lab in given else 1.0 - p[j] for j, lab in enumerate(labels)]
            given_p = float(min(decided)) if decided else 1.0
            confidence = 1.0 - given_p
        else:
            j = int(p.argmax())
            suggested, confidence = labels[j], float(p[j])
            given_p = float(p[col[str(given)]])
        rows.append(
            {
                "row_id": str(df["row_id"].iloc[pos]),
                "text": str(df["text"].iloc[pos]),
                "given": list(given) if multi_label else str(given),
                "suggested": suggested,
                "confidence": round(confidence, 4),
                "given_probability": round(given_p, 4),
            }
        )
    return rows


def _encode(
    df: pd.DataFrame, labels: list[str], multi_label: bool
) -> tuple[np.ndarray, np.ndarray | list[list[int]]]:
    """Targets for the model (ids, or a multi-hot matrix) and for cleanlab (ids, or id lists)."""
    col = {lab: j for j, lab in enumerate(labels)}
    if multi_label:
        lists = [[col[lab] for lab in row] for row in df["label"]]
        hot = np.zeros((len(df), len(labels)), dtype=np.int64)
        for i, present in enumerate(lists):
            hot[i, present] = 1
        return hot, lists
    ids = np.array([col[str(x)] for x in df["label"]], dtype=np.int64)
    return ids, ids


def _sure(
    df: pd.DataFrame,
    positions: np.ndarray,
    probs: np.ndarray,
    labels: list[str],
    multi_label: bool,
    floor: float,
) -> Suspects:
    rows = _describe(df, positions, probs, labels, multi_label)
    keep = [i for i, r in enumerate(rows) if r["confidence"] >= floor]
    return Suspects(len(df), positions[keep], [rows[i] for i in keep])


def find_suspects(
    spec: LabelErrorsSpec, splits: dict[str, pd.DataFrame], seed: int, embed: Embedder | None = None
) -> tuple[dict[str, Suspects], list[str], bool]:
    """Suspected rows of every split, the label order used, and whether the labels are sets.

    ``embed`` (texts -> embeddings) is required by ``spec.features == "embeddings"``."""
    if spec.features == "embeddings":
        if embed is None:
            raise ValueError("cleaning.label_errors.features: embeddings needs an embedder")
        embed = _memoized(embed, [t for df in splits.values() for t in df["text"]])
    else:
        embed = None
    train = splits["train"]
    multi_label = bool(len(train)) and isinstance(train["label"].iloc[0], list | tuple | np.ndarray)
    if multi_label:
        labels = sorted({str(lab) for df in splits.values() for row in df["label"] for lab in row})
    else:
        labels = sorted({str(x) for df in splits.values() for x in df["label"]})
    k = len(labels)
    y_fit, y_flag = _encode(train, labels, multi_label)
    oof = out_of_fold_probs(list(train["text"]), y_fit, k, spec.folds, seed, multi_label, embed)
    positions = flag(y_flag, oof, spec, multi_label)
    floor = spec.min_confidence
    out = {"train": _sure(train, positions, oof, labels, multi_label, floor)}
    for name in EVALUATION_SPLITS:
        part = splits.get(name)
        if part is None or not len(part):
            continue
        probs = _fit_predict(list(train["text"]), y_fit, list(part["text"]), k, seed, multi_label, embed)
        _, given = _encode(part, labels, multi_label)
        found = flag(given, probs, spec, multi_label)
        out[name] = _sure(part, found, probs, labels, multi_label, floor)
    return out, labels, multi_label


def _memoized(embed: Embedder, texts: Sequence[str]) -> Embedder:
    """``embed`` run once over every distinct text; the folds then only look rows up."""
    distinct = list(dict.fromkeys(texts))
    vectors = embed(distinct) if distinct else np.zeros((0, 0), dtype=np.float32)
    index = {t: i for i, t in enumerate(distinct)}

    def lookup(batch: Sequence[str]) -> np.ndarray:
        return vectors[[index[t] for t in batch]]

    return lookup


def _fail(spec: LabelErrorsSpec, over: dict[str, Suspects]) -> LabelErrorsFound:
    problems: list[Problem] = []
    for name, s in over.items():
        problems.append(
            Problem(
                "cleaning.label_errors.max_rate",
                f"{len(s.positions)} of {s.checked} {name} rows ({s.rate:.1%}) look mislabelled, over the "
                f"limit {spec.max_rate:g}; review them (policy: report lists them all) or raise max_rate",
            )
        )
        problems += [
            Problem(
                r["row_id"],
                f"given {r['given']!r}, suggested {r['suggested']!r} (confidence {r['confidence']:.2f}): "
                f"{r['text'][:80]!r}",
            )
            for r in s.rows[:ROWS_IN_ERROR]
        ]
    return LabelErrorsFound(problems, "data: suspected label errors")


def check_label_errors(
    spec: LabelErrorsSpec,
    splits: dict[str, pd.DataFrame],
    seed: int,
    record: Recorder,
    embed: Embedder | None = None,
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """Apply the protocol's label-error policy to the splits; returns them and the report entry.

    ``record(stage, rows, removed, detail, examples, base)`` counts a `drop` in the cleaning funnel.
    """
    found, labels, multi_label = find_suspects(spec, splits, seed, embed)
    over = {name: s for name, s in found.items() if s.rate > spec.max_rate}
    if spec.policy == "fail" and over:
        raise _fail(spec, over)
    dropped = 0
    if spec.policy == "drop":
        train = splits["train"]
        positions = found["train"].positions
        keep = np.ones(len(train), dtype=bool)
        keep[positions] = False
        splits = {**splits, "train": train[keep]}
        dropped = len(positions)
        examples = [
            {
                "row_id": r["row_id"],
                "text": r["text"],
                "reason": f"given {r['given']}, suggested {r['suggested']} ({r['confidence']:.2f})",
            }
            for r in found["train"].rows
        ]
        record(
            "label_errors",
            sum(len(p) for p in splits.values()),
            dropped,
            "suspected label errors dropped from the train split (evaluation splits reported only)",
            examples,
            len(train),
        )
    report: dict[str, Any] = {
        "policy": spec.policy,
        "method": (
            f"out-of-fold probabilities from {FEATURE_NAMES[spec.features]} + logistic regression, "
            f"{spec.folds}-fold cross-validation on the train split; validation and test rows scored "
            f"by the same model fitted on the whole train split; cleanlab find_label_issues "
            f"(filter_by={spec.filter_by})"
            + (
                f"; suspects kept only at confidence >= {spec.min_confidence:g}"
                if spec.min_confidence
                else ""
            )
        ),
        "multi_label": multi_label,
        "labels": labels,
        "max_rate": spec.max_rate,
        "dropped_from_train": dropped,
        "splits": {
            name: {
                "checked": s.checked,
                "flagged": len(s.positions),
                "rate": round(s.rate, 6),
                "action": ("dropped" if name == "train" and spec.policy == "drop" else "reported (kept)"),
                "rows": s.rows[: spec.listed],
            }
            for name, s in found.items()
        },
    }
    return splits, report
