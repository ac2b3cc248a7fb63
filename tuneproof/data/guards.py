"""Guards that stop a run before training when the data left cannot support its conclusions.

Two findings are errors rather than results: a cleaning stage that removes a large share of the
rows (usually a normalisation that made distinct records look alike), and splits too small to
learn from or to decide the gates on. Both raise :class:`DataValidationError` (exit code 3) in the
data stage, before any model is loaded for training, and ``tuneproof validate`` reports them too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from tuneproof.errors import Problem
from tuneproof.gates.check import rows_needed
from tuneproof.protocol.schema import Protocol, RemovalLimits

# The protocol field each stage answers to, so an error names what to change.
STAGE_FIELDS = {
    "empty": "cleaning.drop_empty",
    "empty_after_normalisation": "cleaning.drop_empty",
    "conflicting_labels": "cleaning.conflicting_labels",
    "exact_duplicates": "cleaning.drop_exact_duplicates",
    "near_duplicates": "cleaning.near_duplicates",
    "over_length": "cleaning.over_length",
    "leakage": "leakage.action",
    "label_errors": "cleaning.label_errors.policy",
    "bad_images": "images.bad_files",
}
_HINTS = {
    "near_duplicates": "distinct records may look alike to the comparison: where numbers or codes carry the "
    "meaning keep cleaning.near_duplicates.strip_digits false (and strip_punctuation/casefold false where "
    "those matter), or raise cleaning.near_duplicates.threshold",
    "exact_duplicates": "the comparison ignores case and whitespace only; many repeated texts may mean a "
    "join or an export went wrong",
    "conflicting_labels": "the same text appears with different labels; check the labelling before "
    "dropping them",
    "over_length": "raise model.max_length or use cleaning.over_length: truncate",
    "leakage": "the given splits share many texts; check that they were split correctly",
    "label_errors": "many training labels look wrong to the cross-validated model; review the listed rows "
    "(policy: report) before dropping them: a weak model also flags rows that are merely hard",
    "bad_images": "many image files could not be used; the problems above name each one",
}
EXAMPLES_IN_ERROR = 3
MAX_TEXT = 100


def _short(text: object) -> str:
    s = str(text)
    return repr(s if len(s) <= MAX_TEXT else s[: MAX_TEXT - 3] + "...")


def _example_problem(e: Mapping[str, Any]) -> Problem:
    where = str(e.get("row_id"))
    msg = f"removed {_short(e.get('text'))}"
    if e.get("kept_id") is not None:
        sim = f", Jaccard {e['similarity']:.2f}" if isinstance(e.get("similarity"), float) else ""
        msg += (
            f" as a repeat of {e['kept_id']} {_short(e.get('kept_text'))} ({e.get('kind', 'duplicate')}{sim})"
        )
    elif e.get("reason"):
        msg += f" ({e['reason']})"
    return Problem(where, msg)


def removal_problems(
    stages: Sequence[Mapping[str, Any]], limits: RemovalLimits, selected: int
) -> list[Problem]:
    """A problem for every guarded stage over its limit (with a few removed rows beside what they
    duplicated), and one for the total; ``selected`` is the row count the total is measured against."""
    problems: list[Problem] = []
    total = 0
    for s in stages:
        name = str(s["stage"])
        if name not in STAGE_FIELDS:
            continue
        removed, base = int(s.get("removed", 0)), int(s.get("base", 0))
        total += removed
        limit = limits.limit(name)
        if not removed or not base or removed / base <= limit:
            continue
        frac = removed / base
        hint = _HINTS.get(name, "")
        problems.append(
            Problem(
                STAGE_FIELDS[name],
                f"stage {name!r} would remove {removed} of {base} rows ({frac:.1%}), over the limit "
                f"{limit:g} (cleaning.max_removed_fraction); stopped before training. "
                + (hint + ". " if hint else "")
                + f"If the removal is intended, raise the limit: cleaning: {{max_removed_fraction: "
                f"{{stages: {{{name}: {math.ceil(frac * 100) / 100:g}}}}}}}",
            )
        )
        problems += [_example_problem(e) for e in list(s.get("examples") or [])[:EXAMPLES_IN_ERROR]]
    if selected and total / selected > limits.total:
        frac = total / selected
        problems.append(
            Problem(
                "cleaning.max_removed_fraction.total",
                f"cleaning would remove {total} of {selected} rows in all ({frac:.1%}), over the total limit "
                f"{limits.total:g}; stopped before training. If intended: cleaning: {{max_removed_fraction: "
                f"{{total: {math.ceil(frac * 100) / 100:g}}}}}",
            )
        )
    return problems


def _interval_half_width(n: int, confidence: float) -> float | None:
    """Worst-case (p = 0.5) normal half-width of a proportion's interval on ``n`` rows: the smallest
    difference from a threshold the test split can resolve, whatever the model."""
    if n <= 0:
        return None
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return z * 0.5 / math.sqrt(n)


def split_checks(
    protocol: Protocol, sizes: Mapping[str, int], class_counts: Mapping[str, Mapping[str, int]] | None
) -> tuple[list[Problem], dict[str, Any]]:
    """Problems with split sizes (train too small to learn from, test too small for its gates), and
    the report of what each split needed. ``class_counts`` per split, when the task has classes."""
    spec = protocol.split
    confidence = protocol.evaluate.confidence
    problems: list[Problem] = []
    report: dict[str, Any] = {"enforced": spec.enforce_minimums}

    train_n = sizes.get("train", 0)
    train: dict[str, Any] = {"rows": train_n, "needed": spec.min_train_rows}
    if train_n < spec.min_train_rows:
        problems.append(
            Problem(
                "split.min_train_rows",
                f"the train split has {train_n} rows, fewer than the {spec.min_train_rows} needed to learn "
                "from",
            )
        )
    report["train"] = train

    if "test" in sizes:
        test_n = sizes["test"]
        needs = [(spec.min_test_rows, "split.min_test_rows")]
        for i, gate in enumerate(protocol.gates):
            needs.append((rows_needed(gate, confidence), f"gates[{i}] ({gate.label})"))
        needed, why = max(needs, key=lambda x: x[0])
        half = _interval_half_width(test_n, confidence)
        report["test"] = {
            "rows": test_n,
            "needed": needed,
            "needed_by": why,
            "gate_rows_needed": {label: n for n, label in needs[1:]},
            "worst_case_half_width": half,
        }
        if test_n < needed:
            detail = f"the test split has {test_n} rows, fewer than the {needed} that {why} needs" + (
                ": with fewer, even a perfect score could not clear the gate's threshold at the "
                f"{100 * confidence:g}% level, so the gate could never be decided"
                if why.startswith("gates[")
                else f" (at {test_n} rows a {100 * confidence:g}% interval of a proportion can be "
                f"±{half:.2f} wide)"
                if half is not None
                else ""
            )
            problems.append(Problem("split.test", detail))

    for split, floor, field in (
        ("train", spec.min_train_rows_per_class, "split.min_train_rows_per_class"),
        ("test", spec.min_test_rows_per_class, "split.min_test_rows_per_class"),
    ):
        if class_counts is None or split not in class_counts:
            continue
        labels = sorted({lab for c in class_counts.values() for lab in c})
        counts = {lab: int(class_counts[split].get(lab, 0)) for lab in labels}
        small = {lab: n for lab, n in counts.items() if n < floor}
        if small:
            listed = ", ".join(f"{lab!r}: {n}" for lab, n in small.items())
            problems.append(
                Problem(field, f"the {split} split has fewer than {floor} rows of class {listed}")
            )
    if problems:
        hint = (
            "to run anyway (a smoke test; small-split gates are then undecidable and the run is not "
            "deployable) set split: {enforce_minimums: false}, or lower the named minimum"
        )
        problems.append(Problem("split.enforce_minimums", hint))
    report["below_minimums"] = [str(p) for p in problems[:-1]]
    return (problems if spec.enforce_minimums else []), report
