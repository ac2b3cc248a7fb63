"""Test-set evidence: metrics next to baselines, paired differences, errors, calibration, slices."""

from __future__ import annotations

from typing import Any

from tuneproof.report import plots
from tuneproof.report.fmt import (
    as_count,
    comparison_outcome,
    fmt_interval,
    fmt_num,
    interval,
    lower_is_better,
    metric_names,
)
from tuneproof.report.markup import Cell, Safe, chip, details, join, note, para, table
from tuneproof.report.run_data import RunData, dig, mapping, number, sequence

OUTCOME_KIND = {"better": "pass", "worse": "fail", "inconclusive": "neutral"}
# Slices smaller than this get a warning chip: their point estimates swing widely.
SMALL_SLICE = 100


def _metric_label(name: str) -> str:
    return f"{name} ↓" if lower_is_better(name) else name


def test_metrics(run: RunData) -> str | None:
    if not run.metrics:
        return note("No test metrics: metrics.json is absent.")
    model, baselines = run.model_metrics, run.baselines
    names = metric_names(model, *baselines.values())
    n, samples = run.metrics.get("n"), run.metrics.get("bootstrap_samples")
    intro = f"Split '{run.metrics.get('split', 'test')}'"
    if number(n) is not None:
        intro += f", n = {fmt_num(n)}"
    method = {"bca": "BCa ", "percentile": "percentile "}.get(str(run.metrics.get("interval")), "")
    intro += f"; {run.confidence:.0%} {method}bootstrap intervals"
    if number(samples) is not None:
        intro += f" ({fmt_num(samples)} resamples)"
    intro += ". ↓ marks metrics where lower is better."
    if not names:
        return join([para(intro), note("metrics.json holds no scalar metrics.")])
    rows: list[list[Cell]] = []
    for name in names:
        rows.append(
            [
                _metric_label(name),
                Safe(f"<strong>{fmt_interval(model.get(name))}</strong>"),
                *(fmt_interval(b.get(name)) for b in baselines.values()),
            ]
        )
    groups = []
    for name in names:
        entries = [("model", model.get(name), plots.MODEL_COLOR)]
        entries += [
            (b, values.get(name), plots.baseline_color(i)) for i, (b, values) in enumerate(baselines.items())
        ]
        points = []
        for who, value, color in entries:
            point, low, high = interval(value)
            if point is not None:
                points.append(plots.IntervalRow(who, point, low, high, color))
        groups.append(plots.IntervalGroup(_metric_label(name), tuple(points)))
    return join(
        [
            para(intro),
            table(["metric", "model", *baselines], rows),
            plots.interval_plot(groups, salt="metrics"),
        ]
    )


def comparisons(run: RunData) -> str | None:
    comps = run.comparisons
    if not comps:
        return note("No paired comparisons with baselines were computed.") if run.metrics else None
    rows: list[list[Cell]] = []
    by_metric: dict[str, list[plots.IntervalRow]] = {}
    for baseline, diffs in comps.items():
        for metric, diff in diffs.items():
            point, low, high = interval(diff)
            if point is None:
                continue
            outcome = comparison_outcome(metric, diff)
            rows.append(
                [
                    _metric_label(metric),
                    baseline,
                    fmt_interval(diff, signed=True),
                    chip(f"model {outcome}" if outcome != "inconclusive" else outcome, OUTCOME_KIND[outcome]),
                ]
            )
            color = {"better": plots.PASS_COLOR, "worse": plots.FAIL_COLOR}.get(outcome, plots.NEUTRAL_COLOR)
            by_metric.setdefault(metric, []).append(plots.IntervalRow(baseline, point, low, high, color))
    if not rows:
        return None
    groups = [plots.IntervalGroup(_metric_label(m), tuple(r)) for m, r in by_metric.items()]
    return join(
        [
            para(
                "Model minus baseline on the same test rows (paired bootstrap). An interval that excludes "
                "zero on the good side means the model is better; one that includes zero means no "
                "difference was established."
            ),
            table(["metric", "baseline", "difference", "outcome"], rows, numeric_from=2),
            plots.interval_plot(groups, reference=0.0, salt="differences"),
        ]
    )


def _matrix(value: Any) -> list[list[float]] | None:
    rows = sequence(value)
    out = []
    for row in rows:
        cells = [number(c) for c in sequence(row)]
        if not cells or any(c is None for c in cells):
            return None
        out.append([c for c in cells if c is not None])
    return out or None


def confusion_matrix(run: RunData) -> str | None:
    matrix = _matrix(run.model_metrics.get("confusion_matrix"))
    if matrix is None:
        return None
    labels = run.labels
    if len(labels) != len(matrix):
        labels = [str(i) for i in range(len(matrix))]
    return join(
        [
            para(
                "Rows are true labels, columns predicted labels; colour is the share of the true class, "
                "numbers are counts."
            ),
            plots.confusion_heatmap(matrix, labels),
        ]
    )


def _bins(raw_bins: Any) -> list[plots.CalibrationBin]:
    bins = []
    for raw in sequence(raw_bins):
        b = mapping(raw)
        low, high = number(b.get("low")), number(b.get("high"))
        if low is None or high is None or high <= low:
            continue
        bins.append(
            plots.CalibrationBin(
                low,
                high,
                number(b.get("count")) or 0.0,
                number(b.get("confidence")),
                number(b.get("accuracy")),
            )
        )
    return bins


def calibration(run: RunData) -> str | None:
    info = mapping(run.metrics.get("calibration"))
    bins = _bins(info.get("bins"))
    if not bins:
        return None
    text = (
        "How often the model is right when it is this confident. Bars under the diagonal mean "
        "over-confidence."
    )
    ece = run.model_metrics.get("ece")
    if interval(ece)[0] is not None:
        text += f" Expected calibration error (ECE): {fmt_interval(ece)}."
    rows = [[f"{b.low:.2f}–{b.high:.2f}", as_count(b.count), b.confidence, b.accuracy] for b in bins]
    parts: list[str | None] = [para(text)]
    before = mapping(info.get("uncalibrated"))
    before_bins = _bins(before.get("bins"))
    if before_bins:
        change = mapping(info.get("change"))
        parts.append(
            para(
                f"Temperature scaling: T = {fmt_num(info.get('temperature'))}, fitted on the "
                f"{info.get('fitted_on', 'validation')} split (never the test split) and shipped with the "
                f"model; predict and serve return these calibrated probabilities. "
                f"On the test split, ECE before "
                f"{fmt_interval(before.get('ece'))}, after {fmt_interval(ece)} "
                f"(paired change {fmt_interval(change.get('ece'), signed=True)}); log loss before "
                f"{fmt_interval(before.get('log_loss'))}, "
                f"after {fmt_interval(run.model_metrics.get('log_loss'))}."
            )
        )
        parts += [
            para("After temperature scaling (the shipped model):"),
            plots.reliability_diagram(bins),
            para("Before temperature scaling:"),
            plots.reliability_diagram(before_bins),
        ]
    else:
        parts.append(plots.reliability_diagram(bins))
    parts.append(
        details("bins", table(["confidence bin", "predictions", "mean confidence", "accuracy"], rows))
    )
    return join(parts)


def _columns(rows: dict[str, dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows.values():
        for key in row:
            seen.setdefault(str(key), None)
    return list(seen)


def per_class(run: RunData) -> str | None:
    classes = {str(k): mapping(v) for k, v in mapping(run.model_metrics.get("per_class")).items()}
    if not classes:
        return None
    columns = _columns(classes)
    # The data stage's warnings about classes too small to learn or to measure, beside their scores.
    small: dict[str, list[str]] = {}
    for w in sequence(run.data_report.get("small_classes")):
        w = mapping(w)
        if w.get("label") is not None:
            small.setdefault(str(w["label"]), []).append(f"{w.get('rows')} {w.get('split')} rows")
    if not small:
        return table(
            ["class", *columns], ([label, *(row.get(c) for c in columns)] for label, row in classes.items())
        )
    rows: list[list[Cell]] = [
        [
            label,
            *(row.get(c) for c in columns),
            chip("too few: " + ", ".join(small[label]), "warn") if label in small else "",
        ]
        for label, row in classes.items()
    ]
    return join(
        [
            table(["class", *columns, "warning"], rows),
            para(
                "Flagged classes had too few training rows to learn reliably or too few test rows for "
                "their metrics to be more than indicative (see Data: splits and labels)."
            ),
        ]
    )


def _slice_floors(run: RunData) -> dict[str, float]:
    """Floors from ``slice_min`` gates, so the table can flag the slices that broke them."""
    floors: dict[str, float] = {}
    for gate in sequence(run.protocol.get("gates")):
        metric, floor = mapping(gate).get("metric"), number(mapping(gate).get("slice_min"))
        if isinstance(metric, str) and floor is not None:
            floors[metric] = max(floor, floors.get(metric, floor))
    return floors


def slices(run: RunData) -> str | None:
    items = [mapping(s) for s in sequence(run.metrics.get("slices"))]
    items = [s for s in items if s]
    if not items:
        return None
    columns: dict[str, None] = {}
    for s in items:
        for key in mapping(s.get("metrics")):
            columns.setdefault(str(key), None)
    floors = _slice_floors(run)
    with_intervals = any(s.get("intervals") for s in items)
    rows: list[list[Cell]] = [
        [
            Safe("<em>all test rows</em>"),
            run.metrics.get("n"),
            *(
                fmt_interval(run.model_metrics.get(c))
                if with_intervals
                else interval(run.model_metrics.get(c))[0]
                for c in columns
            ),
            "",
        ]
    ]
    for s in items:
        metrics = mapping(s.get("metrics"))
        bounds = mapping(s.get("intervals"))
        flags = []
        n = number(s.get("n"))
        if s.get("gated") is False:
            flags.append(chip("not gated (small)", "warn"))
        elif n is not None and n < SMALL_SLICE:
            flags.append(chip("small", "warn"))
        if with_intervals:
            below = [
                c
                for c, floor in floors.items()
                if s.get("gated") is not False
                and ((low := interval(bounds.get(c))[1]) is None or low < floor)
            ]
        else:
            below = [
                c for c, floor in floors.items() if (v := number(metrics.get(c))) is not None and v < floor
            ]
        if below:
            flags.append(chip("below floor: " + ", ".join(below), "fail"))
        cells = [fmt_interval(bounds.get(c)) if with_intervals else metrics.get(c) for c in columns]
        rows.append([s.get("name", "?"), s.get("n"), *cells, join(flags)])
    if with_intervals:
        size = number(dig(run.protocol, "evaluate", "slice_min_rows"))
        intro = (
            f"Per slice of the test split, with {run.confidence:.0%} bootstrap intervals (the same bootstrap "
            "as the whole split, within each slice). A slice_min gate is decided on each gated slice's "
            "lower bound"
            + (f"; slices under {fmt_num(size)} rows are shown but not gated." if size is not None else ".")
        )
    else:
        intro = "Point estimates per slice of the test split (this run has no slice intervals)."
    return join([para(intro), table(["slice", "n", *columns, ""], rows)])
