"""The exception tree: every exit code is defined once and documented in the README."""

from __future__ import annotations

import re
from pathlib import Path

from tuneproof import errors
from tuneproof.errors import TuneproofError

README = Path(__file__).resolve().parents[2] / "README.md"


def _tree() -> list[type[TuneproofError]]:
    found: list[type[TuneproofError]] = []
    todo: list[type[TuneproofError]] = [TuneproofError]
    while todo:
        cls = todo.pop()
        found.append(cls)
        todo.extend(cls.__subclasses__())
    return found


def _public_tree() -> list[type[TuneproofError]]:
    return [c for c in _tree() if c.__module__ == errors.__name__ and not c.__name__.startswith("_")]


def test_every_exception_class_of_the_package_lives_in_errors_py() -> None:
    import tuneproof.cli
    import tuneproof.runner
    import tuneproof.search.study
    import tuneproof.tasks.sft
    import tuneproof.train.loop  # noqa: F401  (imported so their subclasses, if any, are seen)

    outside = [f"{c.__module__}.{c.__name__}" for c in _tree() if c.__module__ != errors.__name__]
    assert outside == []


def test_exit_codes_are_unique_per_class_that_defines_one() -> None:
    defined = {c.__name__: c.__dict__["exit_code"] for c in _public_tree() if "exit_code" in c.__dict__}
    assert len(defined) >= 12
    codes = list(defined.values())
    assert len(codes) == len(set(codes)), defined
    # the classes without their own code inherit it on purpose: a trial failure is a search failure,
    # and too many suspected label errors are a data problem
    inheriting = {c.__name__ for c in _public_tree() if "exit_code" not in c.__dict__}
    assert inheriting == {"TrialFailed", "LabelErrorsFound"}
    assert errors.TrialFailed.exit_code == errors.SearchError.exit_code
    assert errors.LabelErrorsFound.exit_code == errors.DataValidationError.exit_code
    assert errors.Interrupted.exit_code == 130


def test_every_exit_code_and_class_is_in_the_readme_table() -> None:
    rows = dict(re.findall(r"^\| (\d+) \| `?(\w*)`?", README.read_text(), flags=re.M))
    for cls in _public_tree():
        if "exit_code" in cls.__dict__:
            assert rows.get(str(cls.exit_code)) == cls.__name__, (cls.__name__, cls.exit_code)
    assert rows["0"] == ""


def test_every_class_is_in_the_errors_docstring_with_its_code() -> None:
    doc = errors.__doc__ or ""
    for cls in _public_tree():
        assert re.search(rf"^\s+{cls.exit_code}\s+[│├└─ ]*{cls.__name__}\b", doc, flags=re.M), cls.__name__
