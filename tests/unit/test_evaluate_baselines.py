"""Majority and TF-IDF + logistic regression baselines."""

from __future__ import annotations

import numpy as np
import pytest

from tuneproof.evaluate.baselines import majority_probs, tfidf_logreg_probs

POS = ["great", "wonderful", "superb", "delightful", "brilliant"]
NEG = ["awful", "terrible", "dreadful", "boring", "painful"]


def _texts(words: list[str], n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    filler = ["the", "film", "was", "plot", "and", "cast", "a", "movie"]
    return [
        " ".join([*rng.choice(filler, 4), str(rng.choice(words)), *rng.choice(filler, 3)]) for _ in range(n)
    ]


def test_majority_gives_training_frequencies_in_label_order() -> None:
    p = majority_probs([2, 2, 0, 2], n=3, k=4)
    assert p.shape == (3, 4)
    np.testing.assert_allclose(p, np.tile([0.25, 0.0, 0.75, 0.0], (3, 1)))
    assert (p.argmax(axis=1) == 2).all()
    with pytest.raises(ValueError):
        majority_probs([0, 5], n=1, k=3)


def test_tfidf_beats_majority_on_separable_text() -> None:
    train = _texts(POS, 40, 1) + _texts(NEG, 40, 2)
    y_train = np.array([0] * 40 + [1] * 40)
    test = _texts(NEG, 20, 3) + _texts(POS, 20, 4)  # order differs from training: rows must follow test
    y_test = np.array([1] * 20 + [0] * 20)
    p = tfidf_logreg_probs(train, y_train, test, k=2, seed=13)
    assert p.shape == (40, 2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    tfidf_acc = float((p.argmax(axis=1) == y_test).mean())
    majority_acc = float((majority_probs(y_train, 40, 2).argmax(axis=1) == y_test).mean())
    assert tfidf_acc >= 0.95
    assert majority_acc == pytest.approx(0.5)


def test_tfidf_fills_zero_columns_for_classes_absent_from_training() -> None:
    train = _texts(POS, 40, 1) + _texts(NEG, 40, 2)
    y_train = np.array([0] * 40 + [2] * 40)  # label id 1 never occurs in training
    p = tfidf_logreg_probs(train, y_train, _texts(NEG, 5, 3), k=3, seed=1)
    assert p.shape == (5, 3)
    assert (p[:, 1] == 0).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-9)
    # The same fit with ids 0/1 must reappear in columns 0 and 2: column j is label id j.
    two = tfidf_logreg_probs(train, np.array([0] * 40 + [1] * 40), _texts(NEG, 5, 3), k=2, seed=1)
    np.testing.assert_allclose(p[:, [0, 2]], two, atol=1e-9)
    assert (p[:, 2] > p[:, 0]).mean() >= 0.8  # mostly negative words, so mostly id 2


def test_tfidf_with_a_single_training_class_falls_back_to_it() -> None:
    p = tfidf_logreg_probs(["good film", "fine film"], [1, 1], ["anything"], k=2, seed=1)
    np.testing.assert_allclose(p, [[0.0, 1.0]])


def test_tfidf_is_deterministic_and_checks_lengths() -> None:
    train = _texts(POS, 10, 1) + _texts(NEG, 10, 2)
    y = [0] * 10 + [1] * 10
    a = tfidf_logreg_probs(train, y, train[:3], k=2, seed=5)
    np.testing.assert_array_equal(a, tfidf_logreg_probs(train, y, train[:3], k=2, seed=5))
    with pytest.raises(ValueError, match="labels"):
        tfidf_logreg_probs(train, y[:-1], train[:3], k=2, seed=5)
