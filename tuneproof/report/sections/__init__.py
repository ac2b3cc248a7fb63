"""The sections a report page is built from: the built-ins every run shows, and each task's own.

A task names its sections in its ``TaskSpec.report_sections``; :func:`sections_for_task` puts them
in place among the built-ins. Nothing registers itself on import.
"""

from __future__ import annotations

from collections.abc import Sequence

from tuneproof.report import (
    curve_section,
    export_section,
    generation_sections,
    image_sections,
    privacy_section,
    search_section,
    task_sections,
)
from tuneproof.report.section import Renderer, Section
from tuneproof.report.sections import data, evaluation, lineage, overview, statistics, training
from tuneproof.report.sections.generic import make_other_results
from tuneproof.report.sections.label_errors import label_errors

# Every task-specific section by id, with the built-in section it goes after.
TASK_SECTIONS: dict[str, tuple[Section, str]] = {
    section.id: (section, after)
    for section, after in (
        *task_sections.SECTIONS,
        *generation_sections.SECTIONS,
        *image_sections.SECTIONS,
        search_section.ENTRY,
        curve_section.ENTRY,
        export_section.ENTRY,
    )
}
# Sections every page has a place for (the search section renders nothing for a run without search).
ALWAYS = ("search", "exports")


def _claimed() -> frozenset[str]:
    # Over every section there is, so "Other results" never repeats what a task's section shows.
    return frozenset().union(*(s.claims for s in SECTIONS), *(s.claims for s, _ in TASK_SECTIONS.values()))


SECTIONS: tuple[Section, ...] = (
    Section("header", None, overview.header),
    Section("gates", "Gate verdicts", overview.gates),
    Section("limitations", "Limitations", overview.limitations_section),
    Section("metrics", "Test metrics and baselines", evaluation.test_metrics),
    Section("comparisons", "Paired differences vs baselines", evaluation.comparisons),
    Section(
        "confusion", "Confusion matrix", evaluation.confusion_matrix, frozenset({"model.confusion_matrix"})
    ),
    Section("calibration", "Reliability (calibration)", evaluation.calibration, frozenset({"calibration"})),
    Section("per_class", "Per-class metrics", evaluation.per_class, frozenset({"model.per_class"})),
    Section("slices", "Per-slice metrics", evaluation.slices, frozenset({"slices"})),
    Section("clustering", "Clustered rows", statistics.clustering, frozenset({"clustering"})),
    Section(
        "power", "Power before training", statistics.power, frozenset({"power", "gate_tests", "gate_family"})
    ),
    Section(
        "privacy",
        "Privacy: DP training and memorisation audit",
        privacy_section.privacy,
        frozenset({"privacy"}),
    ),
    Section("other", "Other results", make_other_results(_claimed)),
    Section("training", "Training", training.training),
    Section("data", "Data: sources and cleaning", data.cleaning),
    Section("leakage", "Data: leakage between splits", data.leakage),
    Section("label_errors", "Data: suspected label errors", label_errors),
    Section("splits", "Data: splits and labels", data.splits),
    Section("lengths", "Data: text lengths and truncation", data.lengths),
    Section("pii", "Data: personal information (PII)", data.pii),
    Section("lineage", "Lineage and environment", lineage.lineage),
)


def page_sections(extra: Sequence[tuple[Section, str]]) -> list[Section]:
    """The built-ins with each ``(section, after)`` placed right after the built-in it names."""
    page = list(SECTIONS)
    for section, after in extra:
        ids = [s.id for s in page]
        page.insert(ids.index(after) + 1 if after in ids else ids.index("other"), section)
    return page


def sections_for_task(task: str) -> list[Section]:
    """The page of a run of ``task``: the built-ins plus the sections its TaskSpec names."""
    from tuneproof.tasks.registry import TASKS, task_spec

    own = task_spec(task).report_sections if task in TASKS else ()
    return page_sections([TASK_SECTIONS[i] for i in (*own, *ALWAYS)])


__all__ = ["SECTIONS", "TASK_SECTIONS", "Renderer", "Section", "page_sections", "sections_for_task"]
