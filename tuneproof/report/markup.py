"""The HTML building blocks report sections use, rendered by Jinja2 templates with autoescape.

Texts in a run folder come from user data (labels, file names, example rows) and may hold markup
such as ``<script>``; autoescape makes escaping the default, so a forgotten call cannot inject
anything. The templates live in ``tuneproof/report/templates/`` (``parts.html.j2`` for these
blocks, ``page.html.j2`` for the page); the functions here keep the signatures sections call.
``Safe`` is markupsafe's ``Markup``: HTML built from escaped parts, inserted as is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from tuneproof.report.fmt import fmt_num, fmt_pct
from tuneproof.report.run_data import number

Safe = Markup
Cell = Any


@cache
def environment() -> Environment:
    """The report's Jinja2 environment, built on first use (nothing runs at import)."""
    env = Environment(
        loader=PackageLoader("tuneproof.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.globals["cell"] = render
    return env


@cache
def _parts() -> Any:
    return environment().get_template("parts.html.j2").module


def esc(value: Any) -> Markup:
    return escape("" if value is None else str(value))


def render(value: Cell) -> Markup:
    """A cell's HTML: Markup as is, numbers formatted, anything else escaped."""
    if isinstance(value, Markup):
        return value
    if isinstance(value, bool) or number(value) is not None:
        return esc(fmt_num(value))
    if value is None:
        return Markup("—")
    return esc(value)


def join(parts: Iterable[str | None]) -> Markup:
    """Blocks of HTML one after another; the parts are HTML that sections built, not text."""
    return Markup("\n".join(p for p in parts if p))


def tag(name: str, content: Cell = "", cls: str | None = None, **attrs: str) -> Markup:
    pairs = [(k.rstrip("_"), v) for k, v in attrs.items()]
    return Markup(_parts().tag(name, content, cls, pairs))


def para(content: Cell, cls: str | None = None) -> Markup:
    return tag("p", content, cls)


def h3(content: Cell) -> Markup:
    return tag("h3", content)


def note(content: Cell) -> Markup:
    return tag("p", content, "note")


def chip(text: str, kind: str) -> Markup:
    """A coloured label; ``kind`` is one of pass, fail, warn, info, neutral."""
    return tag("span", text, f"chip {kind}")


def table(
    headers: Sequence[Cell],
    rows: Iterable[Sequence[Cell]],
    cls: str | None = None,
    numeric_from: int = 1,
) -> Markup:
    """A table; columns from ``numeric_from`` on are right-aligned (they usually hold numbers)."""
    return Markup(_parts().table(headers, rows, cls, numeric_from))


def kv_table(items: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> Markup:
    pairs = list(items.items()) if isinstance(items, Mapping) else list(items)
    return Markup(_parts().kv_table(pairs))


def details(summary: str, body: str) -> Markup:
    """A collapsed block: ``summary`` is text (escaped), ``body`` HTML a section built."""
    return Markup(_parts().details(str(summary), Markup(body)))


def pre(text: str) -> Markup:
    return tag("pre", text)


def bar(fraction: float | None, label: str | None = None) -> Markup:
    """A horizontal CSS bar for funnels and shares, sized without any image."""
    frac = min(max(fraction or 0.0, 0.0), 1.0)
    text = label if label is not None else fmt_pct(frac)
    return Markup(_parts().bar(f"{100 * frac:.1f}%", str(text)))


def section_error(exc: BaseException) -> Markup:
    """What the page shows in place of a section whose renderer raised."""
    return Markup(_parts().section_error(f"{type(exc).__name__}: {exc}"))


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
