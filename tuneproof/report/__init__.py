"""Report stage: turns a run folder's JSON evidence into report.html, model_card.md and a terminal summary."""

from tuneproof.report.html import render_page, write_report
from tuneproof.report.limitations import limitations
from tuneproof.report.model_card import CARD_SECTIONS, render_model_card, write_model_card
from tuneproof.report.run_data import RunData, load_run
from tuneproof.report.section import Section
from tuneproof.report.sections import SECTIONS, page_sections, sections_for_task
from tuneproof.report.show import summarize

__all__ = [
    "CARD_SECTIONS",
    "SECTIONS",
    "RunData",
    "Section",
    "limitations",
    "load_run",
    "page_sections",
    "render_model_card",
    "render_page",
    "sections_for_task",
    "summarize",
    "write_model_card",
    "write_report",
]
