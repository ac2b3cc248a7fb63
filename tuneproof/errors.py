"""The typed exceptions tuneproof raises, and the exit code each maps to.

    TuneproofError                      base of everything below
    ├── ProtocolError(ValueError)       the protocol file is invalid; carries every problem with its path
    ├── DataValidationError(ValueError) the input data is invalid; carries every problem with file and line
    ├── UnsafeArtifactError             a pickle file or remote code was refused
    ├── TrainingDiverged(RuntimeError)  a non-finite loss or gradient stopped training
    ├── PersonalDataFound               a PII policy of `fail` matched
    ├── GateFailed                      one or more acceptance gates failed (the run is kept, not deployable)
    ├── RunFolderError                  a run folder is missing, incomplete, or changed
    ├── DriftDetected                   `monitor`: the production window differs from the reference
    └── PerformanceDegraded             `monitor`: on labelled feedback the model is worse than at release

Each class has an ``exit_code`` so the CLI can map failures to distinct process exit codes
without a table of isinstance checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class TuneproofError(Exception):
    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One problem found while validating; ``where`` is a protocol path or ``file:line``."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class _ProblemList(TuneproofError):
    def __init__(self, problems: Sequence[Problem], header: str) -> None:
        self.problems = list(problems)
        lines = [f"{header} ({len(self.problems)} problem{'s' if len(self.problems) != 1 else ''}):"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


class ProtocolError(_ProblemList, ValueError):
    exit_code = 2

    def __init__(self, problems: Sequence[Problem], source: str = "protocol") -> None:
        super().__init__(problems, f"invalid protocol {source}")


class DataValidationError(_ProblemList, ValueError):
    exit_code = 3

    def __init__(self, problems: Sequence[Problem], source: str = "data") -> None:
        super().__init__(problems, f"invalid {source}")


class UnsafeArtifactError(TuneproofError):
    exit_code = 6


class TrainingDiverged(TuneproofError, RuntimeError):
    exit_code = 5


class PersonalDataFound(TuneproofError):
    exit_code = 7


class GateFailed(TuneproofError):
    exit_code = 4


class RunFolderError(TuneproofError):
    exit_code = 8


class DriftDetected(TuneproofError):
    """Inputs or predictions drifted; the model may still be right, but it is seeing what it was not
    validated on. Distinct from ``PerformanceDegraded`` so a scheduler can relabel before retraining."""

    exit_code = 10


class PerformanceDegraded(TuneproofError):
    """Labelled feedback shows a metric worse than the release evaluation, decided on intervals.
    Takes precedence over drift when both hold: it is the stronger evidence."""

    exit_code = 11
