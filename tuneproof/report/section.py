"""The unit the report page is assembled from.

A section is a titled renderer ``RunData -> HTML | None``; returning None leaves the section out
(e.g. no confusion matrix for regression). A task lists its own sections (per-entity scores,
generation samples...) in its ``TaskSpec.report_sections`` instead of editing one large page function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tuneproof.report.run_data import RunData

Renderer = Callable[[RunData], str | None]


@dataclass(frozen=True)
class Section:
    """One block of the page.

    ``id`` is the HTML anchor and the key to position other sections against; ``title`` None means
    no heading and no table-of-contents entry (the page header). ``claims`` names the keys of
    ``metrics.json`` (``"calibration"``) or of its ``model`` entry (``"model.per_class"``) this
    section presents, so the catch-all section does not show them a second time. ``tasks`` limits
    the section to those tasks; None means every task.
    """

    id: str
    title: str | None
    render: Renderer
    claims: frozenset[str] = field(default_factory=frozenset)
    tasks: frozenset[str] | None = None

    def applies_to(self, task: str) -> bool:
        return self.tasks is None or task in self.tasks
