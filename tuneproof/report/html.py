"""``report.html``: one self-contained page (inline CSS and SVG, no scripts, no network) per run."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from tuneproof.report import sections as section_registry
from tuneproof.report.markup import esc
from tuneproof.report.run_data import RunData, load_run
from tuneproof.report.section import Section

REPORT_FILE = "report.html"
log = logging.getLogger(__name__)

CSS = """
:root { --fg:#111827; --muted:#6b7280; --line:#e5e7eb; --bg:#ffffff; --soft:#f9fafb;
        --pass:#15803d; --pass-bg:#dcfce7; --fail:#b91c1c; --fail-bg:#fee2e2;
        --warn:#a16207; --warn-bg:#fef9c3; --info:#1d4ed8; --info-bg:#dbeafe; --accent:#2563eb; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
       color:var(--fg); background:var(--soft); }
main { max-width:1080px; margin:0 auto; padding:24px 20px 64px; }
h1 { font-size:26px; margin:0 0 8px; word-break:break-word; }
h2 { font-size:18px; margin:0 0 12px; padding-bottom:6px; border-bottom:1px solid var(--line); }
h3 { font-size:14px; margin:18px 0 8px; color:#374151; }
section { background:var(--bg); border:1px solid var(--line); border-radius:10px; padding:18px 20px;
          margin:0 0 18px; }
nav { margin:0 0 18px; font-size:13px; }
nav a { color:var(--accent); text-decoration:none; margin-right:14px; white-space:nowrap; }
table { border-collapse:collapse; width:100%; font-size:13px; margin:6px 0 10px; }
th, td { text-align:left; padding:5px 9px; border-bottom:1px solid var(--line); vertical-align:top; }
thead th { background:var(--soft); font-weight:600; }
td.num, th.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
table.kv { width:auto; } table.kv th { color:var(--muted); font-weight:500; padding-right:18px; }
.scroll { overflow-x:auto; }
.chips { margin:4px 0 12px; }
.chip { display:inline-block; padding:1px 10px; border-radius:999px; font-size:12px; font-weight:600;
        margin-right:6px; background:#f3f4f6; color:#374151; white-space:nowrap; }
.chip.pass { background:var(--pass-bg); color:var(--pass); }
.chip.fail { background:var(--fail-bg); color:var(--fail); }
.chip.warn { background:var(--warn-bg); color:var(--warn); }
.chip.info { background:var(--info-bg); color:var(--info); }
.callout { border-left:4px solid; padding:10px 14px; border-radius:6px; margin:10px 0;
           word-break:break-word; }
.callout.fail { border-color:var(--fail); background:var(--fail-bg); }
.callout.warn { border-color:var(--warn); background:var(--warn-bg); }
.note { color:var(--muted); font-style:italic; }
.lead { font-weight:600; }
.plot { margin:8px 0; overflow-x:auto; } .plot svg { max-width:100%; height:auto; }
.bar { position:relative; min-width:120px; height:18px; background:#f3f4f6; border-radius:4px; }
.bar span { position:absolute; left:0; top:0; bottom:0; background:#bfdbfe; border-radius:4px; }
.bar em { position:relative; font-style:normal; font-size:12px; padding-left:6px; }
details { margin:8px 0; } summary { cursor:pointer; color:var(--accent); }
pre { background:var(--soft); border:1px solid var(--line); padding:10px; border-radius:6px;
      overflow-x:auto; font-size:12px; }
code { font-size:12px; }
footer { color:var(--muted); font-size:12px; text-align:center; }
@media print { body { background:#fff; } section { break-inside:avoid; border:none; } nav { display:none; } }
"""


def _render_section(section: Section, run: RunData) -> str | None:
    try:
        return section.render(run)
    except Exception as exc:  # one malformed part must not cost the reader the rest of the evidence
        log.warning("report section %s failed", section.id, exc_info=True)
        reason = f"{esc(type(exc).__name__)}: {esc(exc)}"
        return f'<div class="callout warn">This section could not be rendered: {reason}</div>'


def render_page(run: RunData, sections: Sequence[Section] | None = None) -> str:
    chosen = list(section_registry.sections_for_task(run.task) if sections is None else sections)
    blocks: list[tuple[Section, str]] = []
    for section in chosen:
        if not section.applies_to(run.task):
            continue
        body = _render_section(section, run)
        if body:
            blocks.append((section, body))
    toc = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s, _ in blocks if s.title)
    html_blocks = []
    for section, body in blocks:
        heading = f"<h2>{esc(section.title)}</h2>" if section.title else ""
        html_blocks.append(f'<section id="{esc(section.id)}">{heading}{body}</section>')
        if section.title is None and toc:
            # The table of contents goes right under the untitled header block.
            html_blocks.append(f"<nav>{toc}</nav>")
            toc = ""
    if toc:
        html_blocks.insert(0, f"<nav>{toc}</nav>")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # No external resources may load: this page is evidence and must look the same offline, forever.
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'; "
        'img-src data:">'
        f"<title>{esc(run.name)} — tuneproof report</title><style>{CSS}</style></head>\n"
        f"<body><main>\n{chr(10).join(html_blocks)}\n"
        f"<footer>Generated by tuneproof from {esc(run.path.name)}.</footer></main></body></html>\n"
    )


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
