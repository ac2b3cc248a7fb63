"""The ordered list of sections the report page is built from, and the hooks to extend it.

A task adds its own evidence without touching the built-ins::

    register_section(
        Section("per_entity", "Per-entity scores", render_entities,
                claims=frozenset({"model.per_entity"}), tasks=frozenset({"token_classification"})),
        after="per_class",
    )
"""

from __future__ import annotations

from tuneproof.report.section import Renderer, Section
from tuneproof.report.sections import data, evaluation, lineage, overview, training
from tuneproof.report.sections.generic import make_other_results


def _claimed() -> frozenset[str]:
    return frozenset().union(*(s.claims for s in SECTIONS))


SECTIONS: list[Section] = [
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
    Section("other", "Other results", make_other_results(_claimed)),
    Section("training", "Training", training.training),
    Section("data", "Data: sources and cleaning", data.cleaning),
    Section("leakage", "Data: leakage between splits", data.leakage),
    Section("splits", "Data: splits and labels", data.splits),
    Section("lengths", "Data: text lengths and truncation", data.lengths),
    Section("pii", "Data: personal information (PII)", data.pii),
    Section("lineage", "Lineage and environment", lineage.lineage),
]


def register_section(section: Section, *, after: str | None = None, before: str | None = None) -> Section:
    """Add ``section`` (or replace the one with its id) after/before another id; at the end otherwise."""
    unregister_section(section.id)
    anchor = after or before
    ids = [s.id for s in SECTIONS]
    if anchor is None or anchor not in ids:
        # The catch-all and lineage stay last: a new section is specific evidence and belongs above them.
        index = ids.index("other") if "other" in ids else len(SECTIONS)
    else:
        index = ids.index(anchor) + (1 if after else 0)
    SECTIONS.insert(index, section)
    return section


def unregister_section(section_id: str) -> Section | None:
    for index, section in enumerate(SECTIONS):
        if section.id == section_id:
            return SECTIONS.pop(index)
    return None


__all__ = ["SECTIONS", "Renderer", "Section", "register_section", "unregister_section"]
