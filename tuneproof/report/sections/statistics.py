"""How the intervals were drawn: clusters, the gates' family-wise level, power before training."""

from __future__ import annotations

from tuneproof.report.fmt import fmt_interval, fmt_num
from tuneproof.report.markup import Cell, join, para, table
from tuneproof.report.run_data import RunData, mapping, number, sequence


def clustering(run: RunData) -> str | None:
    info = mapping(run.metrics.get("clustering"))
    if not info:
        return None
    row_level = mapping(info.get("row_level"))
    ratio = mapping(info.get("width_ratio"))
    rows: list[list[Cell]] = []
    for metric in ("accuracy", "macro_f1", "ece", "roc_auc", "log_loss"):
        if metric not in row_level:
            continue
        rows.append(
            [
                metric,
                fmt_interval(run.model_metrics.get(metric)),
                fmt_interval(row_level.get(metric)),
                f"{r:.2f}×" if (r := number(ratio.get(metric))) is not None else "—",
            ]
        )
    text = (
        f"Rows are grouped by '{info.get('column')}': the bootstrap resampled its "
        f"{fmt_num(info.get('clusters'))} clusters "
        f"(mean {fmt_num(info.get('mean_cluster_size'))} rows each), "
        "not the rows, for every metric, paired difference, slice and gate. Beside it, the row bootstrap "
        "the run would report without cluster_by; a ratio above 1 is how much treating correlated rows "
        "as independent would have overstated the precision."
    )
    return join(
        [
            para(text),
            table(["metric", "cluster bootstrap", "row bootstrap", "width ratio"], rows, numeric_from=1),
        ]
    )


def power(run: RunData) -> str | None:
    info = mapping(run.metrics.get("power"))
    gates = [mapping(g) for g in sequence(info.get("gates"))]
    if not gates:
        return None
    rows: list[list[Cell]] = [
        [
            g.get("gate"),
            g.get("margin"),
            g.get("mde"),
            g.get("needed_true_difference"),
            g.get("source"),
            g.get("warning") or "",
        ]
        for g in gates
    ]
    text = (
        f"Stated before training: the smallest paired difference the test split "
        f"({fmt_num(info.get('test_units'))} {info.get('unit', 'rows')}) can detect with "
        f"{number(info.get('power')) or 0:.0%} power at a per-gate level of "
        f"{number(info.get('per_gate_level')) or 0:.1%}, assuming a correlation of "
        f"{fmt_num(info.get('correlation'))} between the model's and the baseline's per-row scores."
    )
    return join(
        [
            para(text),
            table(
                ["gate", "margin", "detectable", "true difference needed", "estimated from", "warning"], rows
            ),
        ]
    )
