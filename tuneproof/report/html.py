"""``report.html``: one self-contained page (inline CSS and SVG, no scripts, no network) per run."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from markupsafe import Markup

from tuneproof.report import sections as section_registry
from tuneproof.report.markup import environment, section_error
from tuneproof.report.run_data import RunData, load_run
from tuneproof.report.section import Section

REPORT_FILE = "report.html"
PAGE_TEMPLATE = "page.html.j2"
log = logging.getLogger(__name__)


def _render_section(section: Section, run: RunData) -> str | None:
    try:
        return section.render(run)
    except Exception as exc:  # one malformed part must not cost the reader the rest of the evidence
        log.warning("report section %s failed", section.id, exc_info=True)
        return section_error(exc)


def render_page(run: RunData, sections: Sequence[Section] | None = None) -> str:
    chosen = list(section_registry.sections_for_task(run.task) if sections is None else sections)
    blocks: list[tuple[Section, str]] = []
    for section in chosen:
        if not section.applies_to(run.task):
            continue
        body = _render_section(section, run)
        if body:
            blocks.append((section, body))
    toc = [{"id": s.id, "title": s.title} for s, _ in blocks if s.title]
    items: list[dict[str, Any]] = []
    for section, body in blocks:
        # a section's body is HTML it built from escaped parts (markup.py); the page inserts it as is
        items.append({"id": section.id, "title": section.title, "body": Markup(body)})
        if section.title is None and toc:
            # The table of contents goes right under the untitled header block.
            items.append({"nav": toc})
            toc = []
    if toc:
        items.insert(0, {"nav": toc})
    template = environment().get_template(PAGE_TEMPLATE)
    return template.render(name=run.name, folder=run.path.name, items=items)


def write_report(run_dir: Path, sections: Sequence[Section] | None = None) -> Path:
    """Render ``run_dir``'s evidence into ``run_dir/report.html`` and return its path."""
    run_dir = Path(run_dir)
    page = render_page(load_run(run_dir), sections)
    target = run_dir / REPORT_FILE
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    # Replace atomically so a crash mid-write never leaves a half page that the manifest would hash.
    os.replace(tmp, target)
    return target
