"""Report sections for token classification, regression and multi-label runs.

Each task names the ones it shows in its ``TaskSpec.report_sections``; the page puts them after the
built-in section given beside each.
"""

from __future__ import annotations

from tuneproof.report.fmt import fmt_interval, fmt_num
from tuneproof.report.markup import Cell, join, note, para, table
from tuneproof.report.run_data import RunData, mapping, number, sequence
from tuneproof.report.section import Section


def per_entity(run: RunData) -> str | None:
    types = {str(k): mapping(v) for k, v in mapping(run.model_metrics.get("per_entity")).items()}
    if not types:
        return None
    baselines = {b: mapping(mapping(v).get("per_entity")) for b, v in run.baselines.items()}
    rows: list[list[Cell]] = []
    for name, row in sorted(types.items(), key=lambda kv: -(number(kv[1].get("support")) or 0)):
        rows.append(
            [
                name,
                row.get("support"),
                row.get("predicted"),
                fmt_interval(row.get("precision")),
                fmt_interval(row.get("recall")),
                fmt_interval(row.get("f1")),
                *(fmt_interval(mapping(b.get(name)).get("f1")) for b in baselines.values()),
            ]
        )
    m = run.metrics
    text = (
        f"Strict entity-level scores ({m.get('scheme', 'IOB2')}) per entity type, with "
        f"{run.confidence:.0%} intervals from resampling {m.get('unit', 'sentence')}s. An entity counts "
        "only when its type and both boundaries match."
    )
    if number(m.get("n_words")) is not None:
        text += f" The test split holds {fmt_num(m.get('n'))} sentences, {fmt_num(m.get('n_words'))} words."
    parts = [
        para(text),
        table(
            ["type", "gold", "predicted", "precision", "recall", "F1", *(f"F1 {b}" for b in baselines)], rows
        ),
    ]
    unseen = [str(t) for t in sequence(m.get("types_unseen_in_training"))]
    if unseen:
        parts.append(
            note(
                f"Types in the test split never seen in training (the model cannot predict them): "
                f"{', '.join(unseen)}."
            )
        )
    truncated = number(m.get("truncated_words"))
    if truncated:
        parts.append(
            note(
                f"{fmt_num(truncated)} test words fell outside model.max_length and were scored "
                "as predicted 'O'."
            )
        )
    return join(parts)


def residuals(run: RunData) -> str | None:
    bins = [mapping(b) for b in sequence(mapping(run.metrics.get("residuals")).get("bins"))]
    if not bins:
        return None
    rows = [
        [
            f"{fmt_num(b.get('low'))}–{fmt_num(b.get('high'))}",
            b.get("n"),
            b.get("mean_true"),
            b.get("mean_pred"),
            b.get("bias"),
            b.get("mae"),
        ]
        for b in bins
    ]
    target = mapping(run.metrics.get("target"))
    intro = (
        "Test rows in quantile bins of the true value. Bias is mean(prediction − truth): a model that "
        "shrinks toward the mean shows positive bias at the low end and negative at the high end."
    )
    if number(target.get("std")) is not None:
        mean, std = fmt_num(target.get("mean")), fmt_num(target.get("std"))
        intro += f" Test target: mean {mean}, standard deviation {std}."
    return join([para(intro), table(["true value", "n", "mean true", "mean predicted", "bias", "MAE"], rows)])


def thresholds(run: RunData) -> str | None:
    info = mapping(run.metrics.get("thresholds"))
    values = mapping(info.get("values"))
    if not values:
        return None
    per = mapping(run.model_metrics.get("per_class"))
    rows = [
        [label, v, mapping(per.get(label)).get("support"), mapping(per.get(label)).get("f1")]
        for label, v in values.items()
    ]
    rule = str(info.get("rule") or "")
    parts = [
        para(f"Decision threshold per label: {rule}. The test split was scored with these fixed values."),
        table(["label", "threshold", "test support", "test F1"], rows),
    ]
    if not info.get("tuned_on"):
        parts.append(note("No validation split, so the thresholds were not tuned."))
    cardinality = number(run.metrics.get("label_cardinality"))
    if cardinality is not None:
        parts.append(note(f"Test texts carry {fmt_num(cardinality)} labels on average."))
    return join(parts)


SECTIONS: list[tuple[Section, str]] = [
    (
        Section(
            "per_entity",
            "Per-entity scores",
            per_entity,
            frozenset(
                {
                    "model.per_entity",
                    "types_unseen_in_training",
                    "truncated_words",
                    "tag_set",
                    "unit",
                    "scheme",
                    "n_words",
                }
            ),
        ),
        "per_class",
    ),
    (
        Section(
            "residuals",
            "Errors along the target scale",
            residuals,
            frozenset({"residuals", "target"}),
        ),
        "comparisons",
    ),
    (
        Section(
            "thresholds",
            "Decision thresholds",
            thresholds,
            frozenset({"thresholds", "label_cardinality"}),
        ),
        "per_class",
    ),
]
