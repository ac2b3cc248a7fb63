"""Cheap baselines a fine-tuned model has to beat, fitted on the training split only.

Both return probabilities ``[n_test, k]`` whose column ``j`` is label id ``j``, for every ``j`` in
``0..k-1`` even when that label never occurs in training (its column is then all zeros), and whose
row ``i`` is ``test_texts[i]``: the same alignment ``evaluate_classification`` expects.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

# Fixed rather than tuned by cross-validation: C around 4 is a strong default for word n-gram TF-IDF,
# and a fixed value keeps the baseline cheap on two cores and free of any chance of seeing test data.
TFIDF_C = 4.0
# Below this many training texts, requiring each n-gram twice empties the vocabulary of toy sets.
_MIN_DF_2_FROM = 1000


def _check_labels(train_labels: Sequence[int] | np.ndarray, k: int) -> np.ndarray:
    y = np.asarray(train_labels)
    if y.ndim != 1 or y.size == 0:
        raise ValueError("train_labels must be a non-empty 1-D sequence of label ids")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= k:
        raise ValueError(f"train_labels must be integer label ids in 0..{k - 1}")
    return y.astype(np.int64)


def majority_probs(train_labels: Sequence[int] | np.ndarray, n: int, k: int) -> np.ndarray:
    """Every row gets the training label frequencies.

    Its argmax is the majority class, so accuracy and F1 are the majority classifier's; using the
    frequencies rather than a one-hot row also gives it an honest log loss and calibration error
    instead of an infinite one. Ties between equally frequent classes go to the lowest id.
    """
    y = _check_labels(train_labels, k)
    prior = np.bincount(y, minlength=k).astype(np.float64) / y.size
    return np.tile(prior, (n, 1))


def tfidf_logreg_probs(
    train_texts: Sequence[str],
    train_labels: Sequence[int] | np.ndarray,
    test_texts: Sequence[str],
    k: int,
    seed: int,
) -> np.ndarray:
    """Word 1-2 gram TF-IDF (sublinear tf) into multinomial logistic regression."""
    y = _check_labels(train_labels, k)
    if len(train_texts) != y.size:
        raise ValueError(f"{len(train_texts)} training texts but {y.size} labels")
    classes = np.unique(y)
    if classes.size < 2:
        # Logistic regression cannot fit one class; predicting it always is the only sensible model.
        return majority_probs(y, len(test_texts), k)
    vectorizer = TfidfVectorizer(
        ngram_range=(1, 2), sublinear_tf=True, min_df=2 if y.size >= _MIN_DF_2_FROM else 1, dtype=np.float64
    )
    x_train = vectorizer.fit_transform(list(train_texts))
    clf = LogisticRegression(C=TFIDF_C, max_iter=2000, random_state=seed)
    clf.fit(x_train, y)
    out = np.zeros((len(test_texts), k), dtype=np.float64)
    if len(test_texts):
        # clf.classes_ holds only the ids seen in training, sorted; scatter them into their own columns.
        out[:, clf.classes_] = clf.predict_proba(vectorizer.transform(list(test_texts)))
    return out
