"""A problem list that keeps the first problems of each file with their ``file:line`` and counts
the rest, so a file with a million bad rows costs a bounded report (and bounded memory)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import SupportsIndex

from tuneproof.errors import Problem

# Enough to see a pattern and fix a file in one go; the count of the rest says how big it is.
PROBLEMS_PER_FILE = 200


def _file_of(where: str) -> str:
    head, sep, tail = where.rpartition(":")
    return head if sep and tail.isdigit() else where


class CappedProblems(list[Problem]):
    """Keeps at most ``limit`` problems per file (the part of ``where`` before ``:line``)."""

    def __init__(self, limit: int = PROBLEMS_PER_FILE) -> None:
        super().__init__()
        self.limit = limit
        self.kept: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()

    def append(self, problem: Problem) -> None:
        f = _file_of(problem.where)
        if self.kept[f] >= self.limit:
            self.dropped[f] += 1
            return
        self.kept[f] += 1
        super().append(problem)

    def extend(self, problems: Iterable[Problem]) -> None:
        for p in problems:
            self.append(p)

    def __iadd__(self, problems: Iterable[Problem]) -> CappedProblems:  # type: ignore[override,misc]
        self.extend(problems)
        return self

    def insert(self, index: SupportsIndex, problem: Problem) -> None:
        super().insert(index, problem)

    def total(self) -> int:
        return len(self) + sum(self.dropped.values())

    def listed(self) -> list[Problem]:
        """The kept problems, then one line per file that had more."""
        out = list(self)
        for f, n in self.dropped.items():
            more = f"... and {n} more problem(s) in this file (the first {self.limit} are listed)"
            out.append(Problem(f, more))
        return out
