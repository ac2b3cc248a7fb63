"""``model_card.md``: what the model is for, what it was trained on, how well it does, and its limits.

Built from the same run files as the HTML page, as a list of section functions (``CARD_SECTIONS``)
each returning Markdown or None, so a task can add its own part the same way it does for the page.

The card is a Hugging Face model card: YAML metadata (``base_model``, ``license``, ``datasets``,
``pipeline_tag``, and a ``model-index`` holding every test metric with its bootstrap interval),
built with ``huggingface_hub``'s ``ModelCard``/``ModelCardData``, then the Markdown sections. It
is written twice: ``model_card.md`` in the run folder and ``model/README.md``, so the ``model/``
folder can be pushed to the Hub as it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path, PurePath
from typing import Any

from tuneproof.report.export_section import card_section as export_card_section
from tuneproof.report.fmt import comparison_outcome, fmt_interval, fmt_num, lower_is_better, metric_names
from tuneproof.report.hub_card import card_data
from tuneproof.report.limitations import limitations
from tuneproof.report.privacy_card import card_section as privacy_card_section
from tuneproof.report.run_data import RunData, dig, load_run, mapping, number, sequence
from tuneproof.report.sections.data import data_summary_counts
from tuneproof.report.sections.overview import describe_location
from tuneproof.report.sections.training import training_settings

MODEL_CARD_FILE = "model_card.md"
HUB_CARD_FILE = "README.md"  # inside model/: the name the Hub shows as the model's card
CardSection = Callable[[RunData], str | None]


def purpose_of(task: str) -> str:
    """What a model of ``task`` does, in the words of the task's own metadata."""
    from tuneproof.tasks.registry import TASKS, task_spec

    return task_spec(task).purpose if task in TASKS else f"performs the task '{task}'"


def md(value: Any) -> str:
    """Text safe inside Markdown (and its table cells): no raw HTML, no column breaks, one line."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if number(value) is not None:
        return fmt_num(value)
    text = "—" if value is None else str(value)
    # Escaping "<" alone is enough to stop raw HTML (tags, comments) and keeps ">=" readable.
    text = text.replace("<", "&lt;")
    return " ".join(text.replace("|", "\\|").split())


def md_table(headers: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(md(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _title(run: RunData) -> str:
    deploy = "deployable" if run.deployable else "not deployable"
    lines = [
        f"# Model card: {md(run.name)}",
        "",
        f"**Status:** {md(run.status)} ({deploy}) · **task:** {md(run.task)}",
    ]
    if (finished := run.manifest.get("finished_at")) is not None:
        lines[-1] += f" · **finished:** {md(finished)}"
    if run.error:
        lines += ["", f"> **The run failed:** {md(run.error)}"]
    return "\n".join(lines)


def _intended_use(run: RunData) -> str:
    purpose = purpose_of(run.task)
    lines = ["## Intended use", "", f"A fine-tuned model that {md(purpose)}."]
    if run.labels:
        lines.append(f"Labels: {', '.join(md(label) for label in run.labels)}.")
    text_col = dig(run.protocol, "data", "text_column")
    if text_col:
        lines.append(f"Input: the text in column `{md(text_col)}`.")
    lines.append("Use it only on text like the training data (see Data and Limitations).")
    return "\n".join(lines)


def _base_model(run: RunData) -> str | None:
    model = mapping(run.protocol.get("model"))
    if not model:
        return None
    facts = {
        "source": describe_location(model.get("source")),
        "revision": model.get("revision"),
        # The digest of its weights and configs (manifest base_model), so a copy can be checked.
        "sha256 (weights and configs)": dig(run.manifest, "base_model", "sha256"),
        "max_length (tokens)": model.get("max_length"),
    }
    rows = [[k, v] for k, v in facts.items() if v is not None]
    return "## Base model\n\n" + md_table(["", ""], rows)


def _data(run: RunData) -> str | None:
    report = run.data_report
    if not report:
        return None
    lines = ["## Data", ""]
    sources = [mapping(s) for s in sequence(report.get("sources"))]
    if sources:
        lines.append(
            md_table(
                ["source", "rows", "sha256"],
                [
                    [PurePath(str(s.get("file", ""))).name, s.get("rows"), str(s.get("sha256") or "")[:12]]
                    for s in sources
                ],
            )
        )
        lines.append("")
    counts = data_summary_counts(run)
    if counts:
        lines.append("Rows: " + ", ".join(f"{md(k)} {md(v)}" for k, v in counts.items()) + ".")
    removed = {k: v for k, v in mapping(report.get("removed")).items() if number(v)}
    if removed:
        lines.append(
            "Removed while cleaning: " + ", ".join(f"{md(k)} {md(v)}" for k, v in removed.items()) + "."
        )
    distribution = {s: mapping(d) for s, d in mapping(report.get("label_distribution")).items() if d}
    if distribution:
        labels = list(dict.fromkeys(label for d in distribution.values() for label in d))
        lines += [
            "",
            md_table(
                ["label", *distribution],
                [[label, *(d.get(label, 0) for d in distribution.values())] for label in labels],
            ),
        ]
    return "\n".join(lines)


def _training(run: RunData) -> str | None:
    if not mapping(run.protocol.get("train")):
        return None
    rows = list(training_settings(run).items())
    return "## Training\n\n" + md_table(["setting", "value"], rows)


def _metrics(run: RunData) -> str | None:
    if not run.metrics:
        return "## Evaluation\n\nNo test metrics: the run stopped before evaluation."
    model, baselines = run.model_metrics, run.baselines
    names = metric_names(model, *baselines.values())
    n = run.metrics.get("n")
    lines = [
        "## Evaluation",
        "",
        f"Test split, n = {md(n)}; values with {run.confidence:.0%} bootstrap intervals. "
        "↓ marks metrics where lower is better.",
        "",
    ]
    if names:
        rows = [
            [
                f"{name} ↓" if lower_is_better(name) else name,
                fmt_interval(model.get(name)),
                *(fmt_interval(b.get(name)) for b in baselines.values()),
            ]
            for name in names
        ]
        lines.append(md_table(["metric", "model", *baselines], rows))
    comps = [
        [metric, baseline, fmt_interval(diff, signed=True), comparison_outcome(metric, diff)]
        for baseline, diffs in run.comparisons.items()
        for metric, diff in diffs.items()
        if number(mapping(diff).get("diff", mapping(diff).get("value"))) is not None
    ]
    if comps:
        lines += [
            "",
            "Paired differences (model − baseline):",
            "",
            md_table(["metric", "baseline", "difference", "model is"], comps),
        ]
    lines += _statistics_notes(run)
    return "\n".join(lines)


def _statistics_notes(run: RunData) -> list[str]:
    """Clustering and calibration, where the run used them (docs/statistics.md)."""
    notes = []
    clustering = mapping(run.metrics.get("clustering"))
    if clustering:
        notes.append(
            f"Intervals resample the {md(clustering.get('clusters'))} values of "
            f"'{clustering.get('column')}' (clusters), not rows."
        )
    calibration = mapping(run.metrics.get("calibration"))
    if number(calibration.get("temperature")) is not None:
        before = mapping(calibration.get("uncalibrated")).get("ece")
        notes.append(
            f"Probabilities are temperature-scaled (T = {fmt_num(calibration.get('temperature'))}, fitted on "
            f"the validation split); ECE before {fmt_interval(before)}, after "
            f"{fmt_interval(run.model_metrics.get('ece'))}. `predict` and `serve` return the scaled ones."
        )
    return ["", *notes] if notes else []


def _gates(run: RunData) -> str | None:
    if not run.verdicts:
        if "gates.json" in run.missing and sequence(run.protocol.get("gates")):
            return "## Acceptance gates\n\nNot evaluated: the run stopped before the gates."
        return None
    rows = []
    for v in run.verdicts:
        low, high = number(v.get("low")), number(v.get("high"))
        span = f"[{fmt_num(low)}, {fmt_num(high)}]" if low is not None and high is not None else "—"
        verdict = "PASS" if v.get("passed") is True else "FAIL" if v.get("passed") is False else "?"
        threshold = v.get("threshold") if v.get("threshold") is not None else v.get("by")
        rows.append(
            [
                verdict,
                v.get("gate") or v.get("metric"),
                v.get("observed"),
                span,
                threshold,
                v.get("decided_on"),
            ]
        )
    family = mapping(run.gates.get("family")).get("statement")
    judged = f"\n\n{family}." if family else ""
    return (
        "## Acceptance gates\n\n"
        + md_table(["verdict", "gate", "observed", "interval", "threshold", "decided on"], rows)
        + judged
    )


def _limitations(run: RunData) -> str | None:
    items = limitations(run)
    if not items:
        return None
    return "## Limitations\n\n" + "\n".join(f"- {md(item)}" for item in items)


def _usage(run: RunData) -> str:
    folder = run.path.name
    text_column = dig(run.protocol, "data", "text_column") or "text"
    return "\n".join(
        [
            "## How to use",
            "",
            "```bash",
            f"tuneproof predict {folder} --input texts.jsonl",
            "```",
            "",
            f"`texts.jsonl` holds one JSON object per line with a `{text_column}` field. The model, "
            "tokenizer and `tuneproof_model.json` are in `model/`; `report.html` holds the full evidence.",
        ]
    )


def _provenance(run: RunData) -> str | None:
    m = run.manifest
    if not m:
        return None
    env = mapping(m.get("environment"))
    facts = [
        ["tuneproof", m.get("tuneproof_version") or env.get("tuneproof")],
        ["protocol sha256", m.get("protocol_sha256")],
        # the environment records tuneproof's version too; it is listed once, above
        *([k, v] for k, v in env.items() if k != "tuneproof" and not isinstance(v, dict | list)),
    ]
    return "## Provenance\n\n" + md_table(["", ""], [r for r in facts if r[1] is not None])


CARD_SECTIONS: list[CardSection] = [
    _title,
    _intended_use,
    _base_model,
    _data,
    _training,
    _metrics,
    _gates,
    privacy_card_section,
    export_card_section,
    _limitations,
    _usage,
    _provenance,
]


def render_body(run: RunData, sections: Sequence[CardSection] | None = None) -> str:
    """The card's Markdown sections, without the metadata."""
    parts = []
    for section in CARD_SECTIONS if sections is None else sections:
        try:
            text = section(run)
        except Exception as exc:  # a malformed part must not cost the card its other sections
            text = f"> A section could not be written: {md(type(exc).__name__)}: {md(exc)}"
        if text:
            parts.append(text.strip())
    return "\n\n".join(parts) + "\n"


def render_model_card(run: RunData, sections: Sequence[CardSection] | None = None) -> str:
    """The whole card: Hugging Face metadata between ``---`` lines, then the Markdown sections."""
    body = render_body(run, sections)
    try:
        data = card_data(run)
    except Exception as exc:  # metadata from malformed files must not cost the reader the card itself
        return f"> The card's metadata could not be written: {md(type(exc).__name__)}: {md(exc)}\n\n{body}"
    return f"---\n{data.to_yaml()}\n---\n\n{body}"


def write_model_card(run_dir: Path, sections: Sequence[CardSection] | None = None) -> Path:
    """Write ``run_dir/model_card.md`` (and ``model/README.md`` when there is a model) and return
    the first path."""
    run_dir = Path(run_dir)
    text = render_model_card(load_run(run_dir), sections)
    target = run_dir / MODEL_CARD_FILE
    targets = [target]
    if (run_dir / "model").is_dir():
        targets.append(run_dir / "model" / HUB_CARD_FILE)
    for path in targets:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return target
