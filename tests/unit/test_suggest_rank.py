"""The ranking rule behind `tuneproof suggest`: margin and entropy uncertainty, most uncertain first."""

from __future__ import annotations

import numpy as np
import pytest

from tuneproof.suggest import rank, uncertainty


def test_margin_and_entropy_order_rows_by_how_unsure_the_model_is() -> None:
    probs = np.array([[0.99, 0.01], [0.55, 0.45], [0.8, 0.2], [0.5, 0.5]])
    assert np.allclose(uncertainty(probs, "margin"), [0.02, 0.9, 0.4, 1.0])
    assert rank(probs, 2, "margin").tolist() == [3, 1]
    assert rank(probs, 10, "entropy").tolist() == [3, 1, 2, 0]
    assert uncertainty(probs, "entropy")[3] == pytest.approx(np.log(2))


def test_margin_looks_at_the_top_two_classes_only() -> None:
    # Same gap between the top two, different spread of the rest: margin ties them, entropy does not.
    probs = np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.1], [0.4, 0.2, 0.4]])
    probs[1, 2] = 0.2  # rows 0 and 1 now equal: the tie keeps pool order
    probs = np.vstack([probs, [[0.5, 0.3, 0.1 + 0.05]]])
    probs = probs / probs.sum(1, keepdims=True)
    assert rank(probs, 1, "margin").tolist() == [2]  # a tie at the top is the least certain
    assert rank(probs, 3, "margin").tolist()[1:] == [0, 1]
    margin, entropy = uncertainty(probs, "margin"), uncertainty(probs, "entropy")
    assert margin[3] < margin[0] and entropy[3] < entropy[0]


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="at least two classes"):
        uncertainty(np.array([0.2, 0.8]))
    with pytest.raises(ValueError, match="unknown method"):
        uncertainty(np.array([[0.2, 0.8]]), "random")  # type: ignore[arg-type]
