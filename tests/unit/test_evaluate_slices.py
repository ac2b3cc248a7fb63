"""Slice masks by length and by metadata column."""

from __future__ import annotations

import numpy as np
import pytest

from tuneproof.evaluate.classification import column_slices, length_slices


def test_length_slices_names_and_bounds() -> None:
    texts = ["one two", "a " * 10, "word " * 24, "w " * 25, ""]
    s = length_slices(texts, [10, 25])
    assert list(s) == ["length < 10", "10 <= length < 25", "length >= 25"]
    assert s["length < 10"].tolist() == [True, False, False, False, True]
    assert s["10 <= length < 25"].tolist() == [False, True, True, False, False]
    assert s["length >= 25"].tolist() == [False, False, False, True, False]
    total = sum(m.astype(int) for m in s.values())
    assert np.all(total == 1)  # every row in exactly one slice


def test_length_slices_single_edge_and_bad_edges() -> None:
    assert list(length_slices(["a"], [3])) == ["length < 3", "length >= 3"]
    with pytest.raises(ValueError):
        length_slices(["a"], [5, 5])


def test_column_slices_group_values_and_missing() -> None:
    s = column_slices(["b", "a", None, "b", float("nan")], column="genre")
    assert list(s) == ["genre = (missing)", "genre = a", "genre = b"]
    assert s["genre = b"].tolist() == [True, False, False, True, False]
    assert s["genre = (missing)"].tolist() == [False, False, True, False, True]
    assert s["genre = a"].dtype == np.bool_
    assert list(column_slices([1, 2])) == ["1", "2"]
