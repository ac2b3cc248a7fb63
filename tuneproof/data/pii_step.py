"""Wire the PII scan into the data stage (before de-duplication and splitting) and into inference."""

from __future__ import annotations

from typing import Any

import pandas as pd

from tuneproof.data.pii import PiiSpec, key_from_env, scan_report, scrub
from tuneproof.errors import DataValidationError, Problem


def pii_frame_hook(spec: PiiSpec, text_column: str) -> Any:
    """A data-stage hook: scrub every configured field of the frame; return it and the report.

    ``text`` in ``spec.fields`` means the protocol's text column; other names are metadata columns.
    """

    def hook(df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
        key = key_from_env(spec)  # lives in memory for this call only; never written
        columns = {f: ("text" if f in ("text", text_column) else f) for f in spec.fields}
        missing = [f for f, col in columns.items() if col not in df.columns]
        if missing:
            raise DataValidationError(
                [Problem(f"pii.fields ({f})", "not the text column nor a metadata column") for f in missing]
            )
        results = []
        for field, col in columns.items():
            values = ["" if v is None else str(v) for v in df[col]]
            res = scrub(values, df["row_id"].tolist(), field, spec, key)
            df = df.assign(**{col: res.texts})
            results.append(res)
        return df, report_shape(scan_report(results))

    return hook


def report_shape(summary: dict[str, Any]) -> dict[str, Any]:
    """The data report's shape: counts by type and field, before and after, and flat examples."""
    before = {f: dict(v.get("found", {})) for f, v in summary.get("fields", {}).items()}
    after = {f: dict(v.get("remaining", {})) for f, v in summary.get("fields", {}).items()}
    by_type_before: dict[str, dict[str, int]] = {}
    by_type_after: dict[str, dict[str, int]] = {}
    for field, counts in before.items():
        for t, n in counts.items():
            by_type_before.setdefault(t, {})[field] = n
    for field, counts in after.items():
        for t, n in counts.items():
            by_type_after.setdefault(t, {})[field] = n
    examples = [{"type": t, "example": e} for t, exs in summary.get("examples", {}).items() for e in exs]
    detector = summary.get("detector") or {}
    return {
        "policy": summary.get("policy"),
        "min_score": summary.get("min_score"),
        "before": by_type_before,
        "after": by_type_after,
        "examples": examples,
        "limitations": summary.get("limitations", []),
        # Flat strings, so the report's settings table shows which detector found the names.
        "person_detector": detector.get("person_detector"),
        "ner_model": _describe(detector.get("ner_model")),
    }


def _describe(model: dict[str, str] | None) -> str | None:
    return f"{model['package']} {model['version']} ({model['license']})" if model else None


def remaining_by_type(pii_report: dict[str, Any] | None) -> dict[str, int]:
    """Detections left after the policy, summed over fields: what `pii_remaining.<TYPE>` gates read."""
    if not pii_report:
        return {}
    return {t: int(sum(by_field.values())) for t, by_field in pii_report.get("after", {}).items()} | {
        t: 0 for t in pii_report.get("before", {}) if t not in pii_report.get("after", {})
    }


def scrub_inputs(spec: PiiSpec, texts: list[str]) -> list[str]:
    """Scrub inference inputs; a `fail` policy raises PersonalDataFound naming the input rows."""
    key = key_from_env(spec)
    return scrub(texts, [f"input:{i + 1}" for i in range(len(texts))], "text", spec, key).texts
