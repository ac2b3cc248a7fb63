"""Report stage: turns a run folder's JSON evidence into report.html, model_card.md and a terminal summary."""

from tuneproof.report.html import render_page, write_report
from tuneproof.report.limitations import limitations
from tuneproof.report.model_card import CARD_SECTIONS, render_model_card, write_model_card
from tuneproof.report.run_data import RunData, load_run
from tuneproof.report.section import Section
from tuneproof.report.sections import SECTIONS, register_section, unregister_section
from tuneproof.report.show import summarize

__all__ = [
    "CARD_SECTIONS",
    "SECTIONS",
    "RunData",
    "Section",
    "limitations",
    "load_run",
    "register_section",
    "render_model_card",
    "render_page",
    "summarize",
    "unregister_section",
    "write_model_card",
    "write_report",
]

# Task-specific sections (per-entity scores, residuals, thresholds) register themselves on import.
from tuneproof.report import generation_sections as _generation_sections  # noqa: F401
from tuneproof.report import search_section as _search_section  # noqa: F401
from tuneproof.report import task_sections as _task_sections  # noqa: F401
