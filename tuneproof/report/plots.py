"""Plots for the report, each returned as inline SVG markup.

Figures are built with the object-oriented ``matplotlib.figure.Figure`` API rather than pyplot, so
no GUI backend is ever selected and no global figure state leaks between calls or threads; the
SVG writer needs no display (the same non-interactive path the Agg backend takes).
Inline SVG keeps the page self-contained and its text searchable; the output is made
deterministic (fixed id salt, no date) so re-rendering an unchanged run gives identical bytes.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tuneproof.report.markup import Safe

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MODEL_COLOR = "#2563eb"
BASELINE_COLORS = ("#9ca3af", "#f59e0b", "#10b981", "#a855f7", "#ef4444", "#14b8a6")
PASS_COLOR, FAIL_COLOR, NEUTRAL_COLOR = "#16a34a", "#dc2626", "#6b7280"

# Above this many classes, per-cell numbers in the confusion matrix become unreadable.
MAX_ANNOTATED_CLASSES = 25

_STRIP = (
    re.compile(r"<\?xml[^>]*\?>\s*"),
    re.compile(r"<!DOCTYPE[^>]*>\s*"),
    re.compile(r"<metadata>.*?</metadata>\s*", re.S),
    re.compile(r"<!--.*?-->\s*", re.S),
    # Namespace declarations are optional for SVG inside HTML and are the only URLs matplotlib writes;
    # dropping them leaves the page free of any http(s) string that a reviewer has to check.
    re.compile(r'\s+xmlns(:xlink)?="[^"]*"'),
)


def _figure(width: float, height: float) -> Figure:
    # Imported here so `tuneproof show`, which draws nothing, does not pay matplotlib's import time.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


@contextmanager
def _style(salt: str) -> Iterator[None]:
    import matplotlib

    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",  # real <text>: smaller, selectable, uses the page's font
            "svg.hashsalt": f"tuneproof-{salt}",  # distinct per plot so clip-path ids never clash
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.titlesize": 10,
            "axes.titleweight": "bold",
            "text.parse_math": False,  # labels come from data: "$5 off" must not be read as TeX
        }
    ):
        yield


def _svg(fig: Figure) -> Safe:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    for pattern in _STRIP:
        text = pattern.sub("", text)
    return Safe(f'<div class="plot">{text.strip()}</div>')


def baseline_color(index: int) -> str:
    return BASELINE_COLORS[index % len(BASELINE_COLORS)]


@dataclass(frozen=True)
class IntervalRow:
    label: str
    value: float
    low: float | None = None
    high: float | None = None
    color: str = MODEL_COLOR


@dataclass(frozen=True)
class IntervalGroup:
    title: str
    rows: tuple[IntervalRow, ...]


def interval_plot(
    groups: Sequence[IntervalGroup], reference: float | None = None, salt: str = "forest"
) -> Safe | None:
    """A forest plot: one small panel per group (metric), one point with its interval per row.

    Panels get their own x scale because metrics live on different scales (accuracy vs log loss).
    ``reference`` draws a vertical line, e.g. 0 for paired differences.
    """
    groups = [g for g in groups if g.rows]
    if not groups:
        return None
    with _style(salt):
        heights = [0.3 * len(g.rows) + 0.35 for g in groups]
        fig = _figure(6.5, sum(heights) + 0.5 * len(groups))
        axes = fig.subplots(len(groups), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
        for ax, group in zip(axes, groups, strict=True):
            ys = list(range(len(group.rows)))[::-1]
            for y, row in zip(ys, group.rows, strict=True):
                if row.low is not None and row.high is not None:
                    ax.hlines(y, row.low, row.high, color=row.color, linewidth=2.2)
                ax.plot([row.value], [y], "o", color=row.color, markersize=5)
            if reference is not None:
                ax.axvline(reference, color=NEUTRAL_COLOR, linewidth=0.8, linestyle="--")
            ax.set_yticks(ys, [r.label for r in group.rows])
            ax.set_ylim(-0.6, len(group.rows) - 0.4)
            ax.set_title(group.title, loc="left")
            ax.grid(axis="x", color="#e5e7eb", linewidth=0.6)
            ax.set_axisbelow(True)
        fig.tight_layout()
        return _svg(fig)


def confusion_heatmap(matrix: Sequence[Sequence[float]], labels: Sequence[str]) -> Safe | None:
    """Heatmap coloured by row share (recall per true class), annotated with raw counts."""
    size = len(matrix)
    if size == 0 or any(len(row) != size for row in matrix):
        return None
    names = list(labels) if len(labels) == size else [str(i) for i in range(size)]
    shares = []
    for row in matrix:
        total = sum(row)
        shares.append([c / total if total else 0.0 for c in row])
    with _style("confusion"):
        side = min(max(3.2, 0.45 * size + 1.6), 12.0)
        fig = _figure(side + 1.0, side)
        ax = fig.subplots()
        image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
        ticks = list(range(size))
        ax.set_xticks(ticks, names, rotation=45 if size > 4 else 0, ha="right" if size > 4 else "center")
        ax.set_yticks(ticks, names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        if size <= MAX_ANNOTATED_CLASSES:
            for i, row in enumerate(matrix):
                for j, count in enumerate(row):
                    color = "white" if shares[i][j] > 0.55 else "#111827"
                    text = f"{count:g}" if isinstance(count, int | float) else str(count)
                    ax.text(j, i, text, ha="center", va="center", color=color, fontsize=8)
        for spine in ax.spines.values():
            spine.set_visible(False)
        fig.tight_layout()
        return _svg(fig)


@dataclass(frozen=True)
class CalibrationBin:
    low: float
    high: float
    count: float
    confidence: float | None
    accuracy: float | None


def reliability_diagram(bins: Sequence[CalibrationBin]) -> Safe | None:
    """Accuracy per confidence bin against the diagonal, with how many predictions fall in each bin."""
    if not bins:
        return None
    with _style("reliability"):
        fig = _figure(5.0, 5.0)
        top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        # Binary classifiers never go below 0.5 confidence; start the axis at the first bin, not at 0.
        lo = max(0.0, min(b.low for b in bins))
        top.plot(
            [lo, 1], [lo, 1], linestyle="--", color=NEUTRAL_COLOR, linewidth=0.8, label="perfect calibration"
        )
        filled = [b for b in bins if b.accuracy is not None and b.count > 0]
        top.bar(
            [b.low for b in filled],
            [b.accuracy or 0.0 for b in filled],
            width=[b.high - b.low for b in filled],
            align="edge",
            color=MODEL_COLOR,
            alpha=0.75,
            edgecolor="white",
            label="observed accuracy",
        )
        with_conf = [b for b in filled if b.confidence is not None]
        top.plot(
            [b.confidence for b in with_conf],
            [b.accuracy for b in with_conf],
            "o",
            color="#111827",
            markersize=3.5,
            label="mean confidence",
        )
        top.set_ylabel("accuracy")
        top.set_ylim(0, 1.02)
        top.legend(loc="upper left", frameon=False, fontsize=8)
        bottom.bar(
            [b.low for b in bins],
            [b.count for b in bins],
            width=[b.high - b.low for b in bins],
            align="edge",
            color=NEUTRAL_COLOR,
            edgecolor="white",
        )
        bottom.set_ylabel("predictions")
        bottom.set_xlabel("confidence")
        bottom.set_xlim(lo, 1.0)
        fig.tight_layout()
        return _svg(fig)


Series = Sequence[tuple[float, float]]


def training_curves(losses: Mapping[str, Series], metrics: Mapping[str, Series]) -> Safe | None:
    """Loss panel (train and validation) and a validation-metrics panel, both against the step."""
    panels = [
        (title, series)
        for title, series in (("loss", losses), ("validation metrics", metrics))
        if any(series.values())
    ]
    if not panels:
        return None
    with _style("training"):
        fig = _figure(6.5 * len(panels) / 1.4 if len(panels) > 1 else 6.0, 3.4)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (title, series) in zip(axes, panels, strict=True):
            for index, (name, points) in enumerate(series.items()):
                if not points:
                    continue
                xs, ys = zip(*points, strict=True)
                color = MODEL_COLOR if index == 0 else baseline_color(index)
                style = "-" if len(points) > 12 else "-o"
                ax.plot(xs, ys, style, color=color, label=name, linewidth=1.4, markersize=3.5)
            ax.set_title(title, loc="left")
            ax.set_xlabel("step")
            ax.grid(color="#e5e7eb", linewidth=0.6)
            ax.legend(frameon=False, fontsize=8)
        fig.tight_layout()
        return _svg(fig)


def label_bars(distribution: Mapping[str, Mapping[str, float]]) -> Safe | None:
    """Grouped bars of each label's share per split (shares, so splits of different sizes compare)."""
    splits = {s: d for s, d in distribution.items() if d and sum(d.values()) > 0}
    if not splits:
        return None
    labels: dict[str, None] = {}
    for counts in splits.values():
        for label in counts:
            labels.setdefault(label, None)
    names = list(labels)
    with _style("labels"):
        fig = _figure(min(max(4.5, 0.6 * len(names) * len(splits) + 2), 11), 3.2)
        ax = fig.subplots()
        width = 0.8 / len(splits)
        for index, (split, counts) in enumerate(splits.items()):
            total = sum(counts.values())
            xs = [i + (index - (len(splits) - 1) / 2) * width for i in range(len(names))]
            ax.bar(
                xs,
                [counts.get(n, 0) / total for n in names],
                width=width,
                label=split,
                color=MODEL_COLOR if index == 0 else baseline_color(index),
            )
        ax.set_xticks(
            range(len(names)),
            names,
            rotation=45 if len(names) > 6 else 0,
            ha="right" if len(names) > 6 else "center",
        )
        ax.set_ylabel("share of split")
        ax.legend(frameon=False, fontsize=8, ncol=len(splits), loc="lower center", bbox_to_anchor=(0.5, 1.0))
        ax.grid(axis="y", color="#e5e7eb", linewidth=0.6)
        ax.set_axisbelow(True)
        fig.tight_layout()
        return _svg(fig)


def length_histogram(
    edges: Sequence[float], counts: Sequence[float], unit: str = "tokens", max_length: float | None = None
) -> Safe | None:
    if len(counts) == 0 or len(edges) != len(counts) + 1:
        return None
    widths = [b - a for a, b in itertools.pairwise(edges)]
    if any(w <= 0 or not math.isfinite(w) for w in widths):
        return None
    with _style("lengths"):
        fig = _figure(6.0, 2.8)
        ax = fig.subplots()
        ax.bar(edges[:-1], counts, width=widths, align="edge", color=MODEL_COLOR, edgecolor="white")
        if max_length is not None:
            ax.axvline(
                max_length, color=FAIL_COLOR, linestyle="--", linewidth=1, label=f"max_length {max_length:g}"
            )
            ax.legend(frameon=False, fontsize=8)
        ax.set_xlabel(f"length ({unit})")
        ax.set_ylabel("texts")
        ax.grid(axis="y", color="#e5e7eb", linewidth=0.6)
        ax.set_axisbelow(True)
        fig.tight_layout()
        return _svg(fig)
