"""What the data stage did: sources, cleaning funnel, duplicates, leakage, splits, lengths, PII."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tuneproof.report import plots
from tuneproof.report.fmt import as_count, fmt_num, fmt_pct, fmt_setting, short_hash
from tuneproof.report.markup import (
    Cell,
    Safe,
    bar,
    details,
    esc,
    generic_value,
    h3,
    join,
    kv_table,
    note,
    para,
    table,
)
from tuneproof.report.run_data import RunData, dig, mapping, number, sequence

# Cap on example rows shown, so a noisy report cannot balloon the page.
MAX_EXAMPLES = 20


def cleaning(run: RunData) -> str | None:
    report = run.data_report
    if not report:
        return None
    parts: list[str | None] = []
    sources = [mapping(s) for s in sequence(report.get("sources"))]
    if sources:
        parts.append(
            table(
                ["source", "rows", "sha256"],
                ([s.get("file"), s.get("rows"), short_hash(s.get("sha256"))] for s in sources),
            )
        )
    stages = [mapping(s) for s in sequence(report.get("stages"))]
    if stages:
        first = number(stages[0].get("rows")) or 0.0
        rows: list[list[Cell]] = []
        for s in stages:
            kept = number(s.get("rows"))
            share = kept / first if first and kept is not None else None
            rows.append(
                [
                    s.get("stage"),
                    s.get("rows"),
                    s.get("removed"),
                    bar(share) if share is not None else "—",
                    s.get("detail") or "",
                ]
            )
        parts.append(h3("Cleaning funnel"))
        parts.append(table(["stage", "rows kept", "removed", "share of read rows", "detail"], rows))
    removed_examples = _removed_examples(stages)
    if removed_examples:
        parts.append(h3("What was removed"))
        parts.append(
            para(
                "Removed rows beside the row each was judged to repeat, per stage, so the thresholds can be "
                "judged on the data itself."
            )
        )
        parts += removed_examples
    limits = mapping(report.get("removal_limits"))
    if limits:
        per_stage = mapping(limits.get("stages"))
        text = (
            f"Removal limits: at most {fmt_setting(limits.get('per_stage'))} of the rows per stage and "
            f"{fmt_setting(limits.get('total'))} in all (cleaning.max_removed_fraction)"
        )
        if per_stage:
            text += "; " + ", ".join(f"{k}: {fmt_setting(v)}" for k, v in per_stage.items())
        parts.append(para(text + "."))
    removed = {str(k): v for k, v in mapping(report.get("removed")).items()}
    if removed:
        parts.append(h3("Rows removed, by reason"))
        parts.append(table(["reason", "rows"], sorted(removed.items(), key=lambda kv: -(number(kv[1]) or 0))))
    near = mapping(report.get("near_duplicates"))
    if near:
        parts.append(
            para(
                f"Near duplicates: {near.get('method', 'method not recorded')}"
                + (f", similarity threshold {fmt_setting(near['threshold'])}" if "threshold" in near else "")
                + "."
            )
        )
    return join(parts) or None


def _removed_examples(stages: Sequence[Mapping[str, Any]]) -> list[str | None]:
    out: list[str | None] = []
    for s in stages:
        examples = [mapping(e) for e in sequence(s.get("examples"))][:MAX_EXAMPLES]
        if not examples:
            continue
        paired = any(e.get("kept_id") is not None for e in examples)
        if paired:
            headers = ["removed row", "removed text", "judged a repeat of", "kept text", "kind", "similarity"]
            rows: list[list[Cell]] = [
                [
                    e.get("row_id"),
                    e.get("text"),
                    e.get("kept_id"),
                    e.get("kept_text"),
                    e.get("kind"),
                    fmt_setting(e["similarity"]) if e.get("similarity") is not None else "",
                ]
                for e in examples
            ]
        else:
            headers = ["removed row", "text", "reason"]
            rows = [[e.get("row_id"), e.get("text"), e.get("reason")] for e in examples]
        removed = s.get("removed")
        out.append(
            details(
                f"{s.get('stage')}: {len(examples)} of {removed} removed rows shown",
                table(headers, rows, numeric_from=99),
            )
        )
    return out


def split_sizes(run: RunData) -> str | None:
    """What each split needed to support a decision, and what the test split can resolve."""
    info = mapping(run.data_report.get("split_sizes"))
    if not info:
        return None
    facts: dict[str, Any] = {}
    train, test = mapping(info.get("train")), mapping(info.get("test"))
    if train:
        facts["train rows (minimum)"] = f"{fmt_num(train.get('rows'))} ({fmt_num(train.get('needed'))})"
    if test:
        facts["test rows (minimum)"] = (
            f"{fmt_num(test.get('rows'))} ({fmt_num(test.get('needed'))}, set by {test.get('needed_by')})"
        )
        half = number(test.get("worst_case_half_width"))
        if half is not None:
            facts["worst-case interval half-width on the test split"] = f"±{half:.3f}"
        for gate, n in mapping(test.get("gate_rows_needed")).items():
            facts[f"rows gate '{gate}' needs to be decidable"] = n
    below = [str(x) for x in sequence(info.get("below_minimums"))]
    if below:
        facts["below the minimums (enforce_minimums: false)"] = "; ".join(below)
    return kv_table(facts)


def leakage(run: RunData) -> str | None:
    leak = mapping(run.data_report.get("leakage"))
    if not leak:
        return None
    facts = {
        "exact overlaps": leak.get("exact"),
        "near overlaps": leak.get("near"),
        "action": leak.get("action"),
    }
    removed = mapping(leak.get("removed"))
    if removed:
        facts["removed from"] = ", ".join(f"{k}: {fmt_num(v)}" for k, v in removed.items())
    clusters = mapping(leak.get("clusters"))
    if clusters:
        pairs = ", ".join(f"{k}: {fmt_num(v)}" for k, v in mapping(clusters.get("pairs")).items())
        facts[f"'{clusters.get('column')}' values in more than one split"] = (
            f"{fmt_num(clusters.get('straddling'))} of {fmt_num(clusters.get('clusters'))}"
            + (f" ({pairs})" if pairs else "")
        )
    parts: list[str | None] = [
        para(
            "Overlaps between the training split and the evaluation splits; a leaked test row "
            "inflates test metrics."
        ),
        kv_table({k: v for k, v in facts.items() if v is not None}),
    ]
    examples = [mapping(e) for e in sequence(leak.get("examples"))][:MAX_EXAMPLES]
    if examples:
        columns = list(dict.fromkeys(str(k) for e in examples for k in e))
        parts.append(
            details(
                f"examples ({len(examples)} shown)",
                table(columns, ([e.get(c) for c in columns] for e in examples), numeric_from=99),
            )
        )
    return join(parts)


def _counts(value: Any) -> dict[str, float]:
    return {str(k): as_count(c) for k, v in mapping(value).items() if (c := number(v)) is not None}


def splits(run: RunData) -> str | None:
    report = run.data_report
    split_info = {str(k): mapping(v) for k, v in mapping(report.get("splits")).items()}
    distribution = {str(k): _counts(v) for k, v in mapping(report.get("label_distribution")).items()}
    if not split_info and not distribution:
        return None
    parts: list[str | None] = []
    sizes = split_sizes(run)
    if sizes:
        parts += [h3("Split sizes and what they can decide"), sizes]
    if split_info:
        total = sum(number(v.get("rows")) or 0 for v in split_info.values())
        rows = []
        for name, info in split_info.items():
            n = number(info.get("rows"))
            rows.append(
                [
                    name,
                    info.get("rows") if n is not None else "absent",
                    bar(n / total) if n is not None and total else "—",
                    short_hash(info.get("sha256")),
                ]
            )
        parts.append(table(["split", "rows", "share", "sha256"], rows))
    present = {s: d for s, d in distribution.items() if d}
    if present:
        labels = list(dict.fromkeys(label for d in present.values() for label in d))
        rows = [[label, *(present[s].get(label, 0) for s in present)] for label in labels]
        parts.append(h3("Label distribution"))
        parts.append(plots.label_bars(present))
        parts.append(table(["label", *present], rows))
    imbalance = mapping(report.get("imbalance"))
    if imbalance:
        weights = imbalance.get("class_weights")
        text = f"Imbalance handling: {imbalance.get('strategy', 'none')}"
        if isinstance(weights, Mapping) and weights:
            text += " (class weights " + ", ".join(f"{k}: {fmt_num(v)}" for k, v in weights.items()) + ")"
        if imbalance.get("requested") == "auto" and imbalance.get("reason"):
            text += f", chosen by imbalance.strategy auto: {imbalance['reason']}"
        parts.append(para(text + "."))
    small = [str(mapping(w).get("text")) for w in sequence(report.get("small_classes")) if mapping(w)]
    if small:
        parts.append(h3("Classes with too few rows"))
        parts.append(Safe("<ul>" + "".join(f"<li>{esc(t)}</li>" for t in small) + "</ul>"))
    return join(parts)


def lengths(run: RunData) -> str | None:
    report = run.data_report
    hist = mapping(report.get("length_histogram"))
    stats = mapping(report.get("length_stats"))
    trunc = mapping(report.get("truncation"))
    if not hist and not stats and not trunc:
        return None
    edges = [e for e in (number(x) for x in sequence(hist.get("edges"))) if e is not None]
    counts = [c for c in (number(x) for x in sequence(hist.get("counts"))) if c is not None]
    unit = str(hist.get("unit") or "tokens")
    parts: list[str | None] = [plots.length_histogram(edges, counts, unit, number(trunc.get("max_length")))]
    facts: dict[str, Any] = {f"{k} ({unit})": fmt_setting(v) for k, v in stats.items()}
    if trunc:
        facts["max_length"] = trunc.get("max_length")
        facts["over-length policy"] = trunc.get("policy")
        facts["over-length texts"] = trunc.get("over_length")
        if number(trunc.get("rate")) is not None:
            facts["truncation rate"] = fmt_pct(trunc["rate"], 2)
    parts.append(kv_table({k: v for k, v in facts.items() if v is not None}))
    return join(parts)


def _flatten(value: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], float]:
    """Counts nested to any depth ({type: n} or {type: {field: n}}) as {(type, field): n}."""
    out: dict[tuple[str, ...], float] = {}
    for key, item in mapping(value).items():
        path = (*prefix, str(key))
        if (n := number(item)) is not None:
            out[path] = as_count(n)
        elif isinstance(item, Mapping):
            out.update(_flatten(item, path))
    return out


# Keys of the PII report rendered specifically; anything else is shown generically.
_PII_KNOWN = {"before", "after", "counts", "examples", "limitations"}


def pii(run: RunData) -> str | None:
    report = run.data_report
    if not report or "pii" not in report:
        return None
    info = report.get("pii")
    if info is None:
        return note("No PII scan was configured for this run; the data was not checked for personal data.")
    if not isinstance(info, Mapping):
        return generic_value(info)
    info = dict(info)
    counts = mapping(info.get("counts"))
    before = _flatten(info.get("before", counts.get("before")))
    after = _flatten(info.get("after", counts.get("after")))
    parts: list[str | None] = []
    settings = {k: v for k, v in info.items() if k not in _PII_KNOWN and not isinstance(v, Mapping | list)}
    if settings:
        parts.append(kv_table(settings))
    if before or after:
        keys = list(dict.fromkeys([*before, *after]))
        depth = max(len(k) for k in keys)
        headers = ["type", "field", *(f"level {i}" for i in range(2, depth))][:depth]
        rows = [[*k, *([""] * (depth - len(k))), before.get(k, 0), after.get(k, 0)] for k in keys]
        parts.append(table([*headers, "found before", "left after"], rows, numeric_from=depth))
    elif counts:
        parts.append(generic_value(counts))
    examples = sequence(info.get("examples"))[:MAX_EXAMPLES]
    if examples:
        if all(isinstance(e, Mapping) for e in examples):
            columns = list(dict.fromkeys(str(k) for e in examples for k in e))
            body = table(columns, ([mapping(e).get(c) for c in columns] for e in examples), numeric_from=99)
        else:
            body = Safe("<ul>" + "".join(f"<li><code>{esc(e)}</code></li>" for e in examples) + "</ul>")
        parts.append(details(f"redacted examples ({len(examples)} shown)", body))
    limits = info.get("limitations")
    items = [limits] if isinstance(limits, str) else sequence(limits)
    if items:
        parts.append(h3("Limitations of the PII detection"))
        parts.append(Safe("<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"))
    for key, value in info.items():
        if key not in _PII_KNOWN and isinstance(value, Mapping | list) and value:
            parts.append(details(str(key), generic_value(value)))
    return join(parts) or note("The PII scan reported nothing.")


def data_summary_counts(run: RunData) -> dict[str, Any]:
    """Rows read, rows after cleaning, and rows per split; shared by the card and `show`."""
    stages = [mapping(s) for s in sequence(run.data_report.get("stages"))]
    out: dict[str, Any] = {}
    if stages:
        out["read"] = stages[0].get("rows")
        out["after cleaning"] = stages[-1].get("rows")
    for name, info in mapping(run.data_report.get("splits")).items():
        if (n := dig(info, "rows")) is not None:
            out[str(name)] = n
    return out
