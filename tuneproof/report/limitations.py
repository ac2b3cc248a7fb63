"""Limitations derived from the evidence, shared by the HTML page and the model card.

Each check reads one part of the run and says, in plain words, what a user of the model should not
assume. Checks return None when they have nothing to say, so a missing part never raises.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePath

from tuneproof.report.fmt import comparison_outcome, fmt_num, fmt_pct, interval, lower_is_better
from tuneproof.report.run_data import RunData, dig, mapping, number, sequence

# Thresholds below are reporting heuristics, not statistics: they decide when a fact is worth a line.
SMALL_TEST_SET = 500
WIDE_HALF_WIDTH = 0.03
MISCALIBRATED_ECE = 0.05
SLICE_GAP = 0.05
SMALL_SLICE = 100
CLASS_GAP = 0.10
IMBALANCE_RATIO = 3.0

# Baselines that give every row the same prediction (the training label frequencies, the mean). A
# constant predictor of the base rate is perfectly calibrated and useless, so "worse calibrated than
# it" holds for every model that discriminates at all: calibration comparisons with these say nothing.
CONSTANT_BASELINES = frozenset({"majority", "mean", "most_frequent_tag"})
CALIBRATION_METRICS = frozenset({"ece"})

# Preferred headline metrics, most informative first; any other interval metric is the fallback.
HEADLINE_METRICS = ("macro_f1", "f1", "micro_f1", "accuracy", "r2", "rmse", "mae", "rouge_l", "bleu")


def headline_metric(run: RunData) -> str | None:
    model = run.model_metrics
    for name in HEADLINE_METRICS:
        if interval(model.get(name))[0] is not None:
            return name
    for name, value in model.items():
        if isinstance(value, dict) and number(value.get("value")) is not None:
            return str(name)
    return None


def _failure(run: RunData) -> str | None:
    if run.status != "failed":
        return None
    return f"The run failed before completing: {run.error or 'no error was recorded'}."


def _gates(run: RunData) -> str | None:
    failed = [str(v.get("gate") or v.get("metric") or "?") for v in run.verdicts if v.get("passed") is False]
    if not failed:
        return None
    return f"Failed gate(s): {', '.join(failed)}. The model did not meet its acceptance criteria."


def _test_size(run: RunData) -> str | None:
    n = number(run.metrics.get("n"))
    name = headline_metric(run)
    if n is None or name is None:
        return None
    _, low, high = interval(run.model_metrics.get(name))
    half = (high - low) / 2 if low is not None and high is not None else None
    if n >= SMALL_TEST_SET and (half is None or half <= WIDE_HALF_WIDTH):
        return None
    width = f"; the {run.confidence:.0%} interval for {name} is ±{half:.3f} wide" if half is not None else ""
    return (
        f"The test set is small (n={fmt_num(int(n))}){width}, "
        "so differences smaller than that are not established."
    )


def _baselines(run: RunData) -> list[str]:
    if not run.metrics:
        return []
    if not run.baselines and not run.comparisons:
        return ["No baselines were evaluated, so there is no reference for how hard this task is."]
    out = []
    for baseline, all_diffs in run.comparisons.items():
        diffs = {m: d for m, d in all_diffs.items() if _meaningful(baseline, m)}
        worse = [m for m, d in diffs.items() if comparison_outcome(m, d) == "worse"]
        unclear = [
            m
            for m, d in diffs.items()
            if interval(d)[0] is not None and comparison_outcome(m, d) == "inconclusive"
        ]
        if worse:
            out.append(f"Worse than the {baseline} baseline on {', '.join(worse)}.")
        if unclear:
            out.append(
                f"Not clearly better than the {baseline} baseline on {', '.join(unclear)} "
                "(the interval of the paired difference includes zero)."
            )
    return out


def _meaningful(baseline: str, metric: str) -> bool:
    """Whether 'model vs baseline on metric' says anything about the model (see CONSTANT_BASELINES)."""
    return not (baseline in CONSTANT_BASELINES and metric in CALIBRATION_METRICS)


def _calibration(run: RunData) -> str | None:
    ece, _, _ = interval(run.model_metrics.get("ece"))
    if ece is None or ece <= MISCALIBRATED_ECE:
        return None
    if dig(run.metrics, "calibration", "temperature") is not None:
        return (
            f"Predicted probabilities remain miscalibrated after temperature scaling (ECE {ece:.3f}); "
            "treat scores as rankings, not as probabilities."
        )
    return (
        f"Predicted probabilities are miscalibrated (ECE {ece:.3f}); treat scores as rankings, "
        "not as probabilities, unless recalibrated."
    )


def _slices(run: RunData) -> list[str]:
    out = []
    small = []
    for item in sequence(run.metrics.get("slices")):
        name = str(mapping(item).get("name", "?"))
        n = number(mapping(item).get("n"))
        if n is not None and n < SMALL_SLICE:
            small.append(f"{name} (n={int(n)})")
        weaker = []
        for metric, value in mapping(mapping(item).get("metrics")).items():
            overall = interval(run.model_metrics.get(metric))[0]
            point = number(value)
            if overall is None or point is None:
                continue
            gap = (point - overall) if lower_is_better(metric) else (overall - point)
            if gap >= SLICE_GAP:
                weaker.append(f"{metric} {point:.3f} vs {overall:.3f} overall")
        if weaker:
            out.append(f"Weaker on slice '{name}': {', '.join(weaker)}.")
    if small:
        out.append(f"Slices with few examples have unreliable estimates: {', '.join(small)}.")
    return out


def _classes(run: RunData) -> str | None:
    per_class = mapping(run.model_metrics.get("per_class"))
    macro = interval(run.model_metrics.get("macro_f1"))[0]
    if not per_class or macro is None:
        return None
    weak = [
        f"{label} (F1 {f1:.3f})"
        for label, row in per_class.items()
        if (f1 := number(mapping(row).get("f1"))) is not None and macro - f1 >= CLASS_GAP
    ]
    return f"Clearly weaker on class(es): {', '.join(weak)}." if weak else None


def _truncation(run: RunData) -> str | None:
    trunc = mapping(run.data_report.get("truncation"))
    over = number(trunc.get("over_length"))
    if not over:
        return None
    max_length = fmt_num(trunc.get("max_length"))
    if trunc.get("policy") == "drop":
        return f"{fmt_num(int(over))} texts over {max_length} tokens were dropped; long inputs are untested."
    return (
        f"{fmt_num(int(over))} texts ({fmt_pct(trunc.get('rate'), 2)}) were longer than {max_length} tokens "
        "and were truncated: the model never sees the end of long inputs."
    )


def _pii(run: RunData) -> list[str]:
    if not run.data_report or "pii" not in run.data_report:
        return []
    pii = run.data_report.get("pii")
    if pii is None:
        return ["The data was not scanned for personal data (PII); the model may have memorised some."]
    limits = mapping(pii).get("limitations")
    items = sequence(limits) if not isinstance(limits, str) else [limits]
    return [f"PII detection: {item}" for item in items if item]


def _leakage(run: RunData) -> str | None:
    leakage = mapping(run.data_report.get("leakage"))
    found = sum(number(leakage.get(k)) or 0 for k in ("exact", "near"))
    if not found or leakage.get("action") != "report":
        return None
    return (
        f"{int(found)} train/evaluation overlaps were found and kept (action 'report'): "
        "test metrics may be optimistic."
    )


def _domain(run: RunData) -> str | None:
    sources = [
        PurePath(str(mapping(s).get("file", ""))).name for s in sequence(run.data_report.get("sources"))
    ]
    sources = [s for s in sources if s]
    if not sources:
        return None
    return (
        f"Trained and evaluated only on data from {', '.join(sources)}; performance on text from other "
        "sources, domains, time periods or languages is unknown."
    )


def _validation(run: RunData) -> str | None:
    if not run.data_report and not run.metrics:
        return None
    rows = number(dig(run.data_report, "splits", "validation", "rows"))
    if rows or run.metrics.get("validation"):
        return None
    return "There was no validation split: training was not monitored on held-out data and not early-stopped."


def _imbalance(run: RunData) -> str | None:
    train = {
        k: c
        for k, v in mapping(dig(run.data_report, "label_distribution", "train")).items()
        if (c := number(v)) is not None
    }
    if len(train) < 2 or min(train.values()) <= 0:
        return None
    ratio = max(train.values()) / min(train.values())
    strategy = dig(run.data_report, "imbalance", "strategy") or "none"
    if ratio < IMBALANCE_RATIO or strategy != "none":
        return None
    rare = min(train, key=lambda k: train[k])
    return (
        f"Training labels are imbalanced ({ratio:.1f}:1) and no rebalancing was used; "
        f"the rarest class '{rare}' may be under-predicted."
    )


Check = Callable[[RunData], "str | list[str] | None"]

CHECKS: list[Check] = [
    _failure,
    _gates,
    _test_size,
    _baselines,
    _calibration,
    _classes,
    _slices,
    _truncation,
    _leakage,
    _imbalance,
    _validation,
    _pii,
    _domain,
]


def limitations(run: RunData) -> list[str]:
    out: list[str] = []
    for check in CHECKS:
        result = check(run)
        if isinstance(result, str):
            out.append(result)
        elif result:
            out.extend(result)
    return out


__all__ = ["CHECKS", "headline_metric", "limitations"]
