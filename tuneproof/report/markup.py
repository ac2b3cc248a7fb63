"""Small HTML builders. Every piece of text is escaped unless it is wrapped in :class:`Safe`.

Texts in a run folder come from user data (labels, file names, example rows) and may hold markup
such as ``<script>``; making escaping the default means a forgotten call cannot inject anything.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from tuneproof.report.fmt import fmt_num, fmt_pct
from tuneproof.report.run_data import number


class Safe(str):
    """HTML that was built here from escaped parts and may be inserted as is."""

    __slots__ = ()


Cell = Any


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def render(value: Cell) -> str:
    """A cell's HTML: Safe as is, numbers formatted, anything else escaped."""
    if isinstance(value, Safe):
        return value
    if isinstance(value, bool) or number(value) is not None:
        return esc(fmt_num(value))
    if value is None:
        return "—"
    return esc(value)


def join(parts: Iterable[str | None]) -> Safe:
    return Safe("\n".join(p for p in parts if p))


def tag(name: str, content: Cell = "", cls: str | None = None, **attrs: str) -> Safe:
    attr_text = f' class="{esc(cls)}"' if cls else ""
    attr_text += "".join(f' {k.rstrip("_")}="{esc(v)}"' for k, v in attrs.items())
    return Safe(f"<{name}{attr_text}>{render(content)}</{name}>")


def para(content: Cell, cls: str | None = None) -> Safe:
    return tag("p", content, cls)


def h3(content: Cell) -> Safe:
    return tag("h3", content)


def note(content: Cell) -> Safe:
    return tag("p", content, "note")


def chip(text: str, kind: str) -> Safe:
    """A coloured label; ``kind`` is one of pass, fail, warn, info, neutral."""
    return tag("span", text, f"chip {kind}")


def table(
    headers: Sequence[Cell],
    rows: Iterable[Sequence[Cell]],
    cls: str | None = None,
    numeric_from: int = 1,
) -> Safe:
    """A table; columns from ``numeric_from`` on are right-aligned (they usually hold numbers)."""

    def cells(row: Sequence[Cell], cell_tag: str) -> str:
        out = []
        for i, value in enumerate(row):
            align = ' class="num"' if i >= numeric_from else ""
            out.append(f"<{cell_tag}{align}>{render(value)}</{cell_tag}>")
        return "".join(out)

    body = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows)
    head = f"<thead><tr>{cells(headers, 'th')}</tr></thead>"
    cls_attr = f' class="{esc(cls)}"' if cls else ""
    return Safe(f'<div class="scroll"><table{cls_attr}>{head}<tbody>{body}</tbody></table></div>')


def kv_table(items: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> Safe:
    pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
    rows = "".join(f"<tr><th>{render(k)}</th><td>{render(v)}</td></tr>" for k, v in pairs)
    return Safe(f'<table class="kv"><tbody>{rows}</tbody></table>')


def details(summary: str, body: str) -> Safe:
    return Safe(f"<details><summary>{esc(summary)}</summary>{body}</details>")


def pre(text: str) -> Safe:
    return tag("pre", text)


def bar(fraction: float | None, label: str | None = None) -> Safe:
    """A horizontal CSS bar for funnels and shares, sized without any image."""
    frac = min(max(fraction or 0.0, 0.0), 1.0)
    text = label if label is not None else fmt_pct(frac)
    return Safe(f'<div class="bar"><span style="width:{100 * frac:.1f}%"></span><em>{esc(text)}</em></div>')


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | bool) or number(value) is not None


def _cell(value: Any) -> Cell:
    """A cell for an unknown value: intervals print as 'v [lo, hi]', nested data as compact JSON."""
    if isinstance(value, Mapping) and "value" in value:
        lo, hi = value.get("low"), value.get("high")
        text = fmt_num(value.get("value"))
        if number(lo) is not None and number(hi) is not None:
            text += f" [{fmt_num(lo)}, {fmt_num(hi)}]"
        return text
    if _is_scalar(value):
        return value
    return json.dumps(value, default=str, sort_keys=True)[:300]


def generic_value(value: Any) -> Safe:
    """Best-effort rendering of a value whose meaning this module does not know.

    Tasks add their own metrics (per-entity scores, error buckets...); shaping them as a table
    keeps them readable without a dedicated renderer.
    """
    if isinstance(value, Mapping):
        rows = {str(k): v for k, v in value.items()}
        if rows and all(isinstance(v, Mapping) and "value" not in v for v in rows.values()):
            columns: dict[str, None] = {}
            for v in rows.values():
                for key in v:
                    columns.setdefault(str(key), None)
            return table(
                ["", *columns],
                ([name, *(_cell(v.get(c)) for c in columns)] for name, v in rows.items()),
            )
        if "value" in rows:
            return table(
                ["value", "low", "high"],
                [[_cell(rows.get(k)) for k in ("value", "low", "high")]],
                numeric_from=0,
            )
        return kv_table({k: _cell(v) for k, v in rows.items()})
    if isinstance(value, list) and value and all(isinstance(r, list) for r in value):
        width = max(len(r) for r in value)
        return table(["", *range(width)], ([i, *(_cell(c) for c in r)] for i, r in enumerate(value)))
    if isinstance(value, list):
        if all(_is_scalar(v) for v in value):
            return para(", ".join(fmt_num(v) for v in value))
        return pre(json.dumps(value, indent=2, default=str)[:20_000])
    return para(_cell(value))
