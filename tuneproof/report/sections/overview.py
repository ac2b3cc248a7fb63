"""Page header, gate verdicts and limitations: what a reader needs before any detail."""

from __future__ import annotations

from typing import Any

from tuneproof.report.fmt import fmt_duration, fmt_num
from tuneproof.report.limitations import limitations
from tuneproof.report.markup import Safe, chip, esc, join, kv_table, note, para, table, tag
from tuneproof.report.run_data import RunData, dig, mapping, number, sequence

STATUS_KIND = {"passed": "pass", "rejected": "fail", "failed": "fail", "running": "info"}


def describe_location(value: Any) -> str:
    """A protocol location (hub id, path, or {package, path}) as one string."""
    if isinstance(value, dict):
        return ":".join(str(value[k]) for k in ("package", "path") if value.get(k))
    return "—" if value is None else str(value)


def header(run: RunData) -> str:
    status = run.status
    chips = join(
        [
            chip(status, STATUS_KIND.get(status, "neutral")),
            chip(f"deployable: {'yes' if run.deployable else 'no'}", "pass" if run.deployable else "fail"),
        ]
    )
    facts: dict[str, Any] = {
        "task": run.task,
        "base model": describe_location(dig(run.protocol, "model", "source")),
        "started": run.manifest.get("started_at"),
        "finished": run.manifest.get("finished_at"),
        "run time": fmt_duration(run.duration_seconds),
        "run folder": run.path.name,
        "tuneproof": run.manifest.get("tuneproof_version"),
    }
    parts = [
        tag("h1", run.name),
        Safe(f'<div class="chips">{chips}</div>'),
        kv_table({k: v for k, v in facts.items() if v not in (None, "", "—")}),
    ]
    if (run.path / "reference").is_dir():
        # Checks are appended after release, so the link is fixed now and the index appears later.
        parts.append(
            Safe(
                '<p>Monitoring: <a href="monitoring/index.html">checks of production windows</a> '
                "against this run's test split (written by <code>tuneproof monitor</code>).</p>"
            )
        )
    if run.error:
        parts.append(
            Safe(f'<div class="callout fail"><strong>The run failed.</strong> {esc(run.error)}</div>')
        )
    elif status == "failed":
        parts.append(
            Safe(
                '<div class="callout fail"><strong>The run failed</strong> without recording an error.</div>'
            )
        )
    if not run.metrics and status != "running":
        parts.append(
            note("There are no test metrics (metrics.json is absent): the run stopped before evaluation.")
        )
    if run.missing:
        parts.append(note("Absent from the run folder: " + ", ".join(run.missing) + "."))
    if run.problems:
        items = "".join(f"<li>{esc(p)}</li>" for p in run.problems)
        parts.append(Safe(f'<div class="callout warn">Some files could not be read:<ul>{items}</ul></div>'))
    return join(parts)


def _threshold(verdict: dict[str, Any]) -> Any:
    value = verdict.get("threshold")
    return value if value is not None else verdict.get("by")


def gates(run: RunData) -> str | None:
    verdicts = run.verdicts
    if not verdicts:
        if sequence(run.protocol.get("gates")) and "gates.json" in run.missing:
            return note("The gates were not evaluated (gates.json is absent): the run stopped before them.")
        return note("The protocol defines no gates.") if run.protocol or run.gates else None
    rows = []
    for v in verdicts:
        passed = v.get("passed")
        verdict = (
            chip("PASS", "pass")
            if passed is True
            else chip("FAIL", "fail")
            if passed is False
            else chip("?", "neutral")
        )
        low, high = number(v.get("low")), number(v.get("high"))
        span = f"[{fmt_num(low)}, {fmt_num(high)}]" if low is not None and high is not None else "—"
        rows.append(
            [
                verdict,
                v.get("gate") or v.get("metric"),
                v.get("metric"),
                v.get("observed"),
                span,
                _threshold(v),
                v.get("decided_on"),
                v.get("detail"),
            ]
        )
    n_pass = sum(1 for v in verdicts if v.get("passed") is True)
    overall = run.gates.get("passed")
    summary = f"{n_pass} of {len(verdicts)} gates passed"
    if isinstance(overall, bool):
        summary += " — accepted" if overall else " — rejected"
    family = mapping(run.gates.get("family"))
    level = f"{run.confidence:.0%}"
    judged = (
        str(family.get("statement")) + "."
        if family.get("statement")
        else f"Gates judged one by one, each at {level}: the {len(verdicts)} together do not hold at "
        f"{level} (evaluate.gate_family: holm judges them as a family)."
        if len(verdicts) > 1
        else ""
    )
    return join(
        [
            tag("p", summary, "lead"),
            para(judged) if judged else None,
            table(
                ["verdict", "gate", "metric", "observed", "interval", "threshold", "decided on", "detail"],
                rows,
                numeric_from=3,
            ),
        ]
    )


def limitations_section(run: RunData) -> str | None:
    items = limitations(run)
    if not items:
        return None
    return Safe("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>")
