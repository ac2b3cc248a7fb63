"""Suspected label errors found by confident learning, per split, for a person to review."""

from __future__ import annotations

from typing import Any

from tuneproof.report.fmt import fmt_num, fmt_pct
from tuneproof.report.markup import Cell, details, join, kv_table, note, para, table
from tuneproof.report.run_data import RunData, mapping, number, sequence


def _label(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or "(none)"
    return str(value)


def label_errors(run: RunData) -> str | None:
    info = mapping(run.data_report.get("label_errors"))
    if not info:
        return None
    policy = str(info.get("policy", "report"))
    parts: list[str | None] = [
        para(
            "Rows whose given label disagrees with what a model that never saw them predicts, beyond the "
            "noise confident learning expects; the suggested label and its probability are that model's. "
            "A flagged row is a candidate for review, not a proven error: a weak model also flags rows "
            "that are merely hard or ambiguous."
        ),
        kv_table(
            {
                "policy": policy,
                "method": info.get("method"),
                "dropped from the train split": fmt_num(info.get("dropped_from_train")),
                "fail above (policy fail)": fmt_pct(info.get("max_rate")),
            }
        ),
    ]
    splits = {str(k): mapping(v) for k, v in mapping(info.get("splits")).items()}
    parts.append(
        table(
            ["split", "rows checked", "suspected", "rate", "action"],
            (
                [
                    name,
                    s.get("checked"),
                    s.get("flagged"),
                    fmt_pct(s.get("rate")) if number(s.get("rate")) is not None else "—",
                    s.get("action"),
                ]
                for name, s in splits.items()
            ),
        )
    )
    for name, s in splits.items():
        rows = [mapping(r) for r in sequence(s.get("rows"))]
        if not rows:
            continue
        body: list[list[Cell]] = [
            [
                r.get("row_id"),
                r.get("text"),
                _label(r.get("given")),
                _label(r.get("suggested")),
                fmt_num(r.get("confidence")),
                fmt_num(r.get("given_probability")),
            ]
            for r in rows
        ]
        title = f"{name}: {len(rows)} of {fmt_num(s.get('flagged'))} suspected rows, most suspicious first"
        if name != "train":
            title += " (kept: changing an evaluation split changes what its metric means)"
        parts.append(
            details(
                title,
                table(
                    ["row", "text", "given label", "suggested label", "confidence", "p(given)"],
                    body,
                    numeric_from=4,
                ),
            )
        )
    if not any(number(s.get("flagged")) for s in splits.values()):
        parts.append(note("No row was flagged."))
    return join(parts)
