"""The exports' evidence in the report and the model card, read from ``metrics.json``'s ``exports``.

Every page has a place for it, right after the gate verdicts; it renders nothing for a run that was
never exported. Each export shows whether it was released (and why not), its agreement with the
original model, the paired difference on every metric, and its gate verdicts.
"""

from __future__ import annotations

import json
from typing import Any

from tuneproof.report.fmt import fmt_num
from tuneproof.report.markup import chip, h3, join, para, table
from tuneproof.report.run_data import RunData, mapping, number, sequence
from tuneproof.report.section import Section


def _span(entry: Any) -> str:
    e = mapping(entry)
    low, high = number(e.get("low")), number(e.get("high"))
    return f"[{fmt_num(low)}, {fmt_num(high)}]" if low is not None and high is not None else "—"


def _verification(run: RunData, folder: str) -> dict[str, Any]:
    try:
        data = json.loads((run.path / folder / "verification.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return mapping(data)


def exports(run: RunData) -> dict[str, dict[str, Any]]:
    return {k: mapping(v) for k, v in mapping(run.metrics.get("exports")).items()}


def render(run: RunData) -> str | None:
    found = exports(run)
    if not found:
        return None
    parts: list[str | None] = [
        para(
            "Each export was re-evaluated on this run's test split against the packaged model: the "
            "task's metrics with the paired bootstrap difference export minus original, the share of "
            "rows predicted identically (exact binomial interval) and the largest probability or "
            "score difference. An export is released only when every export gate passes."
        )
    ]
    for fmt, e in found.items():
        verification = _verification(run, str(e.get("folder") or f"exports/{fmt}"))
        released = e.get("released") is True
        parts.append(h3(f"{fmt}: " + ("released" if released else "NOT released")))
        parts.append(chip("RELEASED" if released else "NOT RELEASED", "pass" if released else "fail"))
        if verification.get("reason"):
            parts.append(para(str(verification["reason"])))
        identical = mapping(e.get("identical_predictions"))
        worst = e.get("max_probability_difference", e.get("max_score_difference"))
        parts.append(
            para(
                f"identical predictions {fmt_num(number(identical.get('value')))} {_span(identical)}; "
                f"largest difference {fmt_num(number(worst))}; folder {e.get('folder')}"
            )
        )
        diffs = mapping(e.get("difference_vs_original"))
        model = mapping(e.get("model"))
        rows = [
            [
                name,
                number(mapping(model.get(name)).get("value")),
                _span(model.get(name)),
                mapping(d).get("diff"),
                _span(d),
            ]
            for name, d in diffs.items()
        ]
        if rows:
            parts.append(
                table(["metric", "export", "interval", "export - original", "interval"], rows, numeric_from=1)
            )
        verdicts = sequence(mapping(verification.get("gates")).get("verdicts"))
        if verdicts:
            parts.append(
                table(
                    ["verdict", "gate", "observed", "interval", "detail"],
                    [
                        [
                            chip("PASS", "pass") if mapping(v).get("passed") else chip("FAIL", "fail"),
                            mapping(v).get("gate"),
                            mapping(v).get("observed"),
                            _span(v),
                            mapping(v).get("detail"),
                        ]
                        for v in verdicts
                    ],
                    numeric_from=2,
                )
            )
    return join(parts)


def card_section(run: RunData) -> str | None:
    """The model card's "Exports" section (Markdown)."""
    found = exports(run)
    if not found:
        return None
    rows = []
    for fmt, e in found.items():
        identical = mapping(e.get("identical_predictions"))
        worst = e.get("max_probability_difference", e.get("max_score_difference"))
        failed = ", ".join(str(g) for g in sequence(e.get("failed_gates"))) or "none"
        rows.append(
            [
                fmt,
                "yes" if e.get("released") is True else "no",
                f"{fmt_num(number(identical.get('value')))} {_span(identical)}",
                fmt_num(number(worst)),
                failed,
                e.get("folder"),
            ]
        )
    return (
        "## Exports\n\nRe-evaluated on the test split against the packaged model; released only when "
        "every export gate passed.\n\n"
        + _md_table(
            ["format", "released", "identical predictions", "largest difference", "failed gates", "folder"],
            rows,
        )
        + "\n\nServe a released export with `tuneproof serve RUN --backend onnx` (or `onnx-int8`)."
    )


def _md_table(headers: list[str], rows: list[list[Any]]) -> str:
    # The card's own md_table lives in model_card, which imports this module.
    def cell(v: Any) -> str:
        return str("" if v is None else v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)


SECTION = Section("exports", "Exports (re-verified)", render, frozenset({"exports"}))
ENTRY = (SECTION, "gates")  # placed right after the gate verdicts


__all__ = ["ENTRY", "SECTION", "card_section", "exports", "render"]
