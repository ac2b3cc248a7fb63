"""Report sections of the generative tasks: sample generations next to the base model's, how SFT
batches were built (packing, padding, truncation), and what DAPT did to domain vs general text.

Each generative task names the ones it shows in its ``TaskSpec.report_sections``; each claims its
``metrics.json`` keys so the catch-all section skips them.
"""

from __future__ import annotations

from typing import Any

from tuneproof.report.fmt import fmt_interval, fmt_num, fmt_pct
from tuneproof.report.markup import Safe, chip, esc, join, kv_table, note, para, table
from tuneproof.report.run_data import RunData, dig, mapping, number, sequence
from tuneproof.report.section import Section

_TEXT_LIMIT = 600


def _clip(text: Any, limit: int = _TEXT_LIMIT) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def generation_samples(run: RunData) -> str | None:
    rows_in = [mapping(s) for s in sequence(run.metrics.get("samples"))]
    if not rows_in:
        return None
    gen = mapping(run.metrics.get("generation"))
    baselines = [b for b in run.baselines if any(b in s for s in rows_in)]
    headers = ["row", "input", "reference", "model", *baselines]
    rows = []
    for s in rows_in:
        scores = mapping(s.get("rouge_l"))

        def cell(who: str, s: dict[str, Any] = s, scores: dict[str, Any] = scores) -> Safe:
            score = number(scores.get(who))
            suffix = f' <span class="note">(ROUGE-L {fmt_num(score)})</span>' if score is not None else ""
            return Safe(f"{esc(_clip(s.get(who), 300))}{suffix}")

        rows.append(
            [
                s.get("row_id"),
                _clip(s.get("prompt")),
                _clip(s.get("reference"), 300),
                cell("model"),
                *(cell(b) for b in baselines),
            ]
        )
    intro = (
        f"The first {len(rows)} generated test examples, greedy decoding "
        f"(max {fmt_num(gen.get('max_new_tokens'))} new tokens), next to the same decoding from "
        f"{', '.join(baselines) or 'no baseline'}. "
        f"Generation metrics cover {gen.get('subset', 'the test rows')}."
    )
    return join([para(intro), table(headers, rows, numeric_from=99)])


def sft_batching(run: RunData) -> str | None:
    batching = mapping(run.metrics.get("batching"))
    trunc = mapping(run.metrics.get("truncation"))
    if not batching and not trunc:
        return None
    eff = number(run.metrics.get("padding_efficiency"))
    facts: dict[str, Any] = {
        "loss on": batching.get("loss_on"),
        "packing": "yes" if batching.get("packing") else "no",
        "length-grouped batches": batching.get("group_by_length"),
        "padding efficiency (real / padded tokens)": fmt_pct(eff) if eff is not None else None,
        "max_length (tokens)": trunc.get("max_length"),
    }
    train, test = mapping(trunc.get("train")), mapping(trunc.get("test"))
    if train:
        facts["train examples truncated"] = (
            f"{fmt_num(train.get('truncated'))} of {fmt_num(train.get('examples'))}"
        )
        facts["train examples dropped (no assistant tokens left)"] = train.get("dropped_no_assistant_tokens")
        facts["assistant tokens trained on"] = train.get("assistant_tokens")
        facts["packed training rows"] = train.get("packed_rows")
    if test:
        facts["test examples truncated"] = (
            f"{fmt_num(test.get('truncated'))} of {fmt_num(test.get('examples'))}"
        )
        facts["test prompts truncated (left)"] = test.get("prompt_truncated")
    parts = [kv_table({k: v for k, v in facts.items() if v is not None})]
    if batching.get("reason"):
        parts.append(note(str(batching["reason"])))
    if eff is not None and eff < 0.6:
        parts.append(
            para(chip("warn", "warn") + Safe(esc(" more than 40% of the tokens computed were padding")))
        )
    return join(parts)


def dapt_forgetting(run: RunData) -> str | None:
    lm = mapping(run.metrics.get("language_modeling"))
    if not lm:
        return None
    comp = mapping(run.comparisons.get("base_model"))
    rows = []
    for metric, what in (
        ("perplexity", "held-out domain text"),
        ("general_perplexity", "held-out general text"),
    ):
        model, base = run.model_metrics.get(metric), mapping(run.baselines.get("base_model")).get(metric)
        if model is None:
            continue
        diff = mapping(comp.get(metric))
        verdict = "—"
        low, high = number(diff.get("low")), number(diff.get("high"))
        if low is not None and high is not None:
            verdict = "lower (better)" if high < 0 else "higher (worse)" if low > 0 else "no clear change"
        rows.append([what, fmt_interval(model), fmt_interval(base), fmt_interval(diff, signed=True), verdict])
    if not rows:
        return None
    general = mapping(lm.get("general_text"))
    domain = mapping(lm.get("domain_test"))
    intro = (
        f"Perplexity over {fmt_num(lm.get('block_size'))}-token blocks, intervals by bootstrap over blocks "
        f"({fmt_num(domain.get('blocks'))} domain, {fmt_num(general.get('blocks'))} general). "
        "Lower is better; a rise on general text is what the adaptation cost."
    )
    parts = [
        para(intro),
        table(["text", "model", "base model", "model − base", "change"], rows, numeric_from=1),
    ]
    if not general.get("blocks"):
        parts.append(note("No general text was given (dapt.general_text), so forgetting was not measured."))
    sources = [mapping(s) for s in sequence(general.get("sources"))]
    if sources:
        parts.append(
            table(
                ["general text file", "sha256", "documents"],
                [[s.get("file"), _clip(s.get("sha256"), 16), s.get("documents")] for s in sources],
                numeric_from=2,
            )
        )
    return join(parts)


def validation_vs_base(run: RunData) -> str | None:
    base = mapping(dig(run.metrics, "validation_baselines", "base_model"))
    val = mapping(run.metrics.get("validation"))
    if not base or not val:
        return None
    rows = [[k, val.get(k), base.get(k)] for k in ("loss", "perplexity") if k in val or k in base]
    return join(
        [
            para("Validation split (used for model selection), fine-tuned vs base model."),
            table(["metric", "model", "base model"], rows),
        ]
    )


SECTIONS = (
    (
        Section(
            "generation_samples",
            "Sample generations vs the base model",
            generation_samples,
            frozenset({"samples", "generation", "n_generated"}),
        ),
        "comparisons",
    ),
    (
        Section(
            "sft_batching",
            "SFT batching, padding and truncation",
            sft_batching,
            frozenset({"batching", "truncation"}),
        ),
        "generation_samples",
    ),
    (
        Section(
            "dapt_forgetting",
            "Domain vs general perplexity (forgetting)",
            dapt_forgetting,
            frozenset({"language_modeling"}),
        ),
        "comparisons",
    ),
    (
        Section(
            "validation_vs_base",
            "Validation loss vs the base model",
            validation_vs_base,
            frozenset({"validation_baselines"}),
        ),
        "comparisons",
    ),
)


__all__ = [
    "SECTIONS",
    "dapt_forgetting",
    "generation_samples",
    "sft_batching",
    "validation_vs_base",
]
