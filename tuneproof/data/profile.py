"""A first look at a data file before any protocol exists: columns, a preview, guessed text and label
columns and the label distribution. Used by `tuneproof init` and by the UI's Data screen; it reads the
file with the same readers a run uses, so what it shows is what a run would read."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuneproof.data.readers import read_file
from tuneproof.errors import Problem

# A label column has few distinct values relative to the rows; beyond this many it is free text or an id.
MAX_LABELS = 50


@dataclass
class DataProfile:
    path: Path
    columns: list[str]
    rows: int
    preview: list[dict[str, Any]]
    text_column: str | None
    label_column: str | None
    problems: list[Problem] = field(default_factory=list)
    values: dict[str, list[Any]] = field(default_factory=dict, repr=False)

    def label_counts(self, column: str | None = None) -> dict[str, int]:
        """Rows per label of ``column`` (default the guessed label column), most frequent first."""
        column = column or self.label_column
        if column is None or column not in self.values:
            return {}
        counts = Counter(_label_text(v) for v in self.values[column] if not _missing(v))
        return dict(counts.most_common())


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, float) and v != v)


def _label_text(v: Any) -> str:
    return str(v).strip() if not isinstance(v, float) or not v.is_integer() else str(int(v))


def profile_file(
    path: Path, fmt: str = "auto", encoding: str = "utf-8", preview_rows: int = 20
) -> DataProfile:
    result = read_file(path, fmt, encoding)
    columns = [c for c in result.columns if c != "_line"] or sorted(
        {k for r in result.rows[:100] for k in r if k != "_line"}
    )
    values = {c: [r.get(c) for r in result.rows] for c in columns}
    text_col = guess_text_column(values)
    label_col = guess_label_column(values, exclude=text_col)
    preview = [{c: r.get(c) for c in columns} for r in result.rows[:preview_rows]]
    return DataProfile(path, columns, len(result.rows), preview, text_col, label_col, result.problems, values)


def guess_text_column(values: dict[str, list[Any]]) -> str | None:
    """The string column with the longest mean length (texts are long, labels and ids are short)."""
    best, best_len = None, 0.0
    for name, col in values.items():
        strings = [v for v in col if isinstance(v, str)]
        if not strings or len(strings) < 0.9 * len([v for v in col if not _missing(v)]):
            continue
        mean = sum(len(s) for s in strings) / len(strings)
        if name.lower() == "text":
            mean *= 2  # a column named text is the text unless another is far longer
        if mean > best_len:
            best, best_len = name, mean
    return best


def guess_label_column(values: dict[str, list[Any]], exclude: str | None) -> str | None:
    """The column with between 2 and MAX_LABELS distinct values and the fewest distinct values per row;
    one named label/labels/category/target/class wins when it qualifies."""
    candidates: list[tuple[int, str]] = []
    for name, col in values.items():
        if name == exclude:
            continue
        present = [_label_text(v) for v in col if not _missing(v) and not isinstance(v, list | dict)]
        distinct = len(set(present))
        if not present or not 2 <= distinct <= MAX_LABELS or distinct > 0.5 * len(present):
            continue
        preferred = name.lower() in {"label", "labels", "category", "target", "class", "sentiment"}
        candidates.append((0 if preferred else 1, name))
    return min(candidates)[1] if candidates else None
