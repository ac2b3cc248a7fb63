"""``tuneproof show``: the run's status, data counts, key metrics and gate verdicts as plain text."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tuneproof.report.fmt import fmt_duration, fmt_interval, fmt_num, lower_is_better, metric_names
from tuneproof.report.limitations import HEADLINE_METRICS
from tuneproof.report.run_data import RunData, load_run, number
from tuneproof.report.sections.data import data_summary_counts

# Enough metrics to judge the run at a glance; the full list is in report.html.
MAX_METRICS = 6


def _rows_table(rows: Sequence[Sequence[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def _key_metrics(run: RunData) -> list[str]:
    names = metric_names(run.model_metrics, *run.baselines.values())
    if not names:
        return []
    preferred = [n for n in HEADLINE_METRICS if n in names]
    names = (preferred + [n for n in names if n not in preferred])[:MAX_METRICS]
    header = ["metric", "model", *run.baselines]
    rows = [header] + [
        [
            f"{n} (lower is better)" if lower_is_better(n) else n,
            fmt_interval(run.model_metrics.get(n)),
            *(fmt_interval(b.get(n)) for b in run.baselines.values()),
        ]
        for n in names
    ]
    n = run.metrics.get("n")
    title = (
        f"test metrics (n={fmt_num(n)}, {run.confidence:.0%} intervals):"
        if number(n) is not None
        else "test metrics:"
    )
    return [title, *_rows_table(rows)]


def _gate_lines(run: RunData) -> list[str]:
    if not run.verdicts:
        return ["gates: not evaluated" if "gates.json" in run.missing else "gates: none defined"]
    lines = ["gates:"]
    for v in run.verdicts:
        verdict = "PASS" if v.get("passed") is True else "FAIL" if v.get("passed") is False else "????"
        low, high = number(v.get("low")), number(v.get("high"))
        observed = fmt_num(v.get("observed"))
        if low is not None and high is not None:
            observed += f" [{fmt_num(low)}, {fmt_num(high)}]"
        threshold = v.get("threshold") if v.get("threshold") is not None else v.get("by")
        line = f"  {verdict}  {v.get('gate') or v.get('metric')}: observed {observed}"
        if threshold is not None:
            line += f" vs {fmt_num(threshold)}"
        if v.get("decided_on"):
            line += f" ({v['decided_on']})"
        lines.append(line)
    return lines


def summarize(run_dir: Path) -> str:
    """A compact plain-text summary of the run folder, for the terminal."""
    run = load_run(Path(run_dir))
    lines = [
        f"{run.name}  [{run.status.upper()}]  deployable: {'yes' if run.deployable else 'no'}",
        f"task: {run.task}  ·  run time: {fmt_duration(run.duration_seconds)}  ·  folder: {run.path}",
    ]
    if run.error:
        lines.append(f"error: {run.error}")
    counts = data_summary_counts(run)
    if counts:
        lines.append("data: " + ", ".join(f"{k} {fmt_num(v)}" for k, v in counts.items()))
    metrics = _key_metrics(run)
    lines += (
        metrics
        if metrics
        else ["test metrics: none (metrics.json is absent)" if not run.metrics else "test metrics: none"]
    )
    comps = []
    for baseline, diffs in run.comparisons.items():
        for metric, diff in diffs.items():
            if metric in run.model_metrics and (text := fmt_interval(diff, signed=True)) != "—":
                comps.append(f"{metric} vs {baseline} {text}")
    if comps:
        lines.append("paired differences: " + "; ".join(comps[:MAX_METRICS]))
    lines += _gate_lines(run)
    for problem in run.problems:
        lines.append(f"warning: {problem}")
    report = run.path / "report.html"
    if report.is_file():
        lines.append(f"report: {report}")
    return "\n".join(lines)
