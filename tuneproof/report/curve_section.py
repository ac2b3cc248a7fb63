"""The report's learning-curve section (``metrics.json: learning_curve``): the metric against the
number of labels per class with intervals over test rows and repeats, the full-data level, the
paired comparisons, and the answer in a sentence."""

from __future__ import annotations

from typing import Any

from tuneproof.report import plots
from tuneproof.report.fmt import fmt_interval, fmt_num
from tuneproof.report.markup import Cell, Safe, join, note, para, table
from tuneproof.report.run_data import RunData, mapping, number, sequence
from tuneproof.report.section import Section


def _series(points: list[Any]) -> list[tuple[float, float, float | None, float | None]]:
    out = []
    for p in points:
        p = mapping(p)
        x, y = number(p.get("size")), number(p.get("value"))
        if x is not None and y is not None:
            out.append((x, y, number(p.get("low")), number(p.get("high"))))
    return sorted(out)


def curve_plot(curve: dict[str, Any]) -> Safe | None:
    methods = mapping(curve.get("methods"))
    series = {m: _series(sequence(mapping(curve.get("points")).get(m))) for m in methods}
    if not any(series.values()):
        return None
    with plots._style("learning-curve"):
        fig = plots._figure(6.0, 3.4)
        ax = fig.subplots()
        for index, (m, pts) in enumerate(series.items()):
            color = plots.MODEL_COLOR if index == 0 else plots.baseline_color(index)
            if pts:
                xs = [p[0] for p in pts]
                ys = [p[1] for p in pts]
                lows = [p[2] if p[2] is not None else p[1] for p in pts]
                highs = [p[3] if p[3] is not None else p[1] for p in pts]
                ax.fill_between(xs, lows, highs, color=color, alpha=0.15, linewidth=0)
                ax.plot(xs, ys, "-o", color=color, label=str(methods[m]), linewidth=1.4, markersize=4)
            full = mapping(mapping(curve.get("full")).get(m))
            if number(full.get("value")) is not None:
                ax.axhline(
                    float(full["value"]),
                    color=color,
                    linestyle="--",
                    linewidth=0.9,
                    label=f"{methods[m]}, all training rows",
                )
        ax.set_xscale("log", base=2)
        sizes = [p[0] for pts in series.values() for p in pts]
        ticks = sorted(set(sizes))
        ax.set_xticks(ticks, [fmt_num(int(t)) for t in ticks])
        ax.set_xlabel("labelled training rows per class")
        ax.set_ylabel(str(curve.get("metric", "metric")))
        ax.grid(color="#e5e7eb", linewidth=0.6)
        ax.legend(frameon=False, fontsize=7)
        fig.tight_layout()
        return plots._svg(fig)


def learning_curve(run: RunData) -> str | None:
    curve = mapping(run.metrics.get("learning_curve"))
    if not curve:
        return None
    methods = mapping(curve.get("methods"))
    metric = str(curve.get("metric", "metric"))
    level = f"{round(100 * (number(curve.get('confidence')) or 0.95))}%"
    parts: list[str] = [
        para(
            f"Each method trained on nested, stratified subsets of the training split "
            f"({fmt_num(curve.get('repeats'))} random subsets per size), every point scored on the same "
            f"test split. Intervals ({level}) resample the test rows and the repeats, so they include "
            "the spread between different subsets of the same size."
        ),
        para(str(curve.get("answer", ""))),
    ]
    if (svg := curve_plot(curve)) is not None:
        parts.append(svg)
    points = mapping(curve.get("points"))
    vs_full = {
        m: {mapping(d).get("size"): d for d in sequence(v)}
        for m, v in mapping(curve.get("versus_full")).items()
    }
    vs_tf = {
        m: {mapping(d).get("size"): d for d in sequence(v)}
        for m, v in mapping(curve.get("versus_tfidf")).items()
    }
    rows: list[list[Cell]] = []
    for m, label in methods.items():
        for p in sequence(points.get(m)):
            p = mapping(p)
            size = p.get("size")
            rows.append(
                [
                    str(label),
                    size,
                    p.get("n_repeats"),
                    fmt_interval(p),
                    fmt_interval(vs_full.get(m, {}).get(size), signed=True)
                    if size in vs_full.get(m, {})
                    else "—",
                    fmt_interval(vs_tf.get(m, {}).get(size), signed=True)
                    if size in vs_tf.get(m, {})
                    else "—",
                ]
            )
        full = mapping(mapping(curve.get("full")).get(m))
        if full:
            rows.append([str(label), "all", 1, fmt_interval(full), "—", "—"])
    parts.append(
        table(
            ["method", "per class", "repeats", metric, "vs full data", "vs TF-IDF"],
            rows,
        )
    )
    facts = (
        f"{fmt_num(curve.get('trained_points'))} points trained, {fmt_num(curve.get('cached_points'))} "
        f"read from the cache, in {fmt_num(curve.get('seconds'))} s."
    )
    parts.append(note(facts))
    skipped = [str(s) for s in sequence(curve.get("skipped_points"))]
    if skipped:
        parts.append(note("Not trained (budget spent): " + ", ".join(skipped) + "."))
    return join(parts)


ENTRY: tuple[Section, str] = (
    Section(
        "learning_curve", "Learning curve: how many labels", learning_curve, frozenset({"learning_curve"})
    ),
    "comparisons",
)
