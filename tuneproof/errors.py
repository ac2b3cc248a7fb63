"""Every exception tuneproof raises on purpose, and the process exit code each maps to.

    exit  class                                 meaning
       1  TuneproofError                        base of everything below (no other code fits)
       2  ├── ProtocolError(ValueError)         the protocol is invalid; lists every problem with its path
       3  ├── DataValidationError(ValueError)   the data is invalid; lists every problem with file and line
       3  │   └── LabelErrorsFound              too many rows look mislabelled (label_errors policy `fail`)
       4  ├── GateFailed                        an acceptance gate failed (the run is kept, not deployable)
       5  ├── TrainingDiverged(RuntimeError)    a non-finite loss or gradient stopped training
       6  ├── UnsafeArtifactError               a pickle file or remote code was refused
       7  ├── PersonalDataFound                 a PII policy of `fail` matched
       8  ├── RunFolderError                    a run folder is missing or incomplete
       9  ├── RunFolderChanged                  `verify` found a file that differs from its manifest hash
      10  ├── SearchError                       a hyper-parameter search cannot start or go on
      10  │   └── TrialFailed                   one trial could not finish; the search records it and goes on
      11  ├── TemplateError                     the chat template cannot be used for assistant-only loss
      12  ├── ServeConfigError                  `serve` cannot start as asked (binding, rejected model, keys)
      13  ├── DriftDetected                     `monitor`: the production window differs from the reference
      14  ├── PerformanceDegraded               `monitor`: on labelled feedback, worse than at release
      15  ├── ExportError                       no export as asked (task, format, merge beyond tolerance)
      16  ├── PathOutsideProject                `ui`: a path is outside the project folder (HTTP 403)
      17  ├── FederationFailed                  `federate`: too few sites answered a round, or a site failed
     130  └── Interrupted                       a signal stopped training after a checkpoint; `run` resumes

Each class has an ``exit_code`` so the CLI maps failures to distinct process exit codes without a
table of isinstance checks. A subclass that shares its parent's code (TrialFailed) inherits it
rather than restating it; ``tests/unit/test_errors.py`` checks that every code a class defines is
unique and appears in the README.
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


class LabelErrorsFound(DataValidationError):
    """More rows look mislabelled than ``cleaning.label_errors.max_rate`` allows (policy ``fail``);
    lists the suspected rows. A data problem, so it keeps the data exit code."""


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


class RunFolderChanged(TuneproofError):
    """A file of a run folder no longer matches the hash its manifest recorded."""

    exit_code = 9


class SearchError(TuneproofError):
    """A hyper-parameter search cannot start or go on (no search section, a study that differs...)."""

    exit_code = 10


class TrialFailed(SearchError):
    """A trial that could not finish (out of memory, diverged, invalid values); the search goes on.

    It is a SearchError because one that escaped the search would mean the search itself failed.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TemplateError(TuneproofError):
    """The chat template cannot be used for assistant-only loss (missing or not prefix-stable)."""

    exit_code = 11


class ServeConfigError(TuneproofError):
    """`tuneproof serve` cannot start as asked (unsafe binding, rejected model, bad key file)."""

    exit_code = 12


class DriftDetected(TuneproofError):
    """Inputs or predictions drifted; the model may still be right, but it is seeing what it was not
    validated on. Distinct from ``PerformanceDegraded`` so a scheduler can relabel before retraining."""

    exit_code = 13


class PerformanceDegraded(TuneproofError):
    """Labelled feedback shows a metric worse than the release evaluation, decided on intervals.
    Takes precedence over drift when both hold: it is the stronger evidence."""

    exit_code = 14


class ExportError(TuneproofError):
    """An export cannot be made as asked: the task or method has no such format, or merging LoRA
    adapters would change the model's results beyond the protocol's tolerance."""

    exit_code = 15


class Interrupted(TuneproofError):
    """Training was stopped by a signal after saving a checkpoint; resume with `run --resume`."""

    exit_code = 130


class PathOutsideProject(TuneproofError):
    """`tuneproof ui` refused a path that leaves the project folder (the browser gets 403)."""

    exit_code = 16


class FederationFailed(TuneproofError):
    """A federation cannot go on: too few sites answered a round, or a site or process failed."""

    exit_code = 17
