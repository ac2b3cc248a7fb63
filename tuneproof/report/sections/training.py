"""How training went: curves from the Trainer log history, the settings used, the final state."""

from __future__ import annotations

from typing import Any

from tuneproof.report import plots
from tuneproof.report.fmt import fmt_duration, fmt_setting
from tuneproof.report.markup import details, join, kv_table, note, para
from tuneproof.report.run_data import RunData, dig, mapping, number

# Keys Trainer logs with every evaluation that describe speed, not model quality.
_EVAL_BOOKKEEPING = {
    "eval_loss",
    "eval_runtime",
    "eval_samples_per_second",
    "eval_steps_per_second",
    "epoch",
    "step",
}

# Protocol ``train`` keys worth a line in the page; the full protocol is in the lineage section.
TRAIN_SETTINGS = (
    "method",
    "optimizer",
    "learning_rate",
    "scheduler",
    "warmup_ratio",
    "epochs",
    "max_steps",
    "batch_size",
    "gradient_accumulation",
    "weight_decay",
    "label_smoothing",
    "max_grad_norm",
    "precision",
    "early_stopping",
)


def curves(
    log_history: list[dict[str, Any]],
) -> tuple[dict[str, list[tuple[float, float]]], dict[str, list[tuple[float, float]]]]:
    """Split the log into loss series and validation-metric series, each keyed by a display name."""
    losses: dict[str, list[tuple[float, float]]] = {"train loss": [], "validation loss": []}
    metrics: dict[str, list[tuple[float, float]]] = {}
    for index, entry in enumerate(log_history):
        step = number(entry.get("step"))
        x = step if step is not None else float(index)
        if (loss := number(entry.get("loss"))) is not None:
            losses["train loss"].append((x, loss))
        if (loss := number(entry.get("eval_loss"))) is not None:
            losses["validation loss"].append((x, loss))
        for key, value in entry.items():
            if key.startswith("eval_") and key not in _EVAL_BOOKKEEPING and (v := number(value)) is not None:
                metrics.setdefault(f"validation {key.removeprefix('eval_')}", []).append((x, v))
    return {k: v for k, v in losses.items() if v}, metrics


def training_settings(run: RunData) -> dict[str, str]:
    """The protocol's training settings as written, plus the seed and the precision actually used."""
    train = mapping(run.protocol.get("train"))
    settings = {k: fmt_setting(train[k]) for k in TRAIN_SETTINGS if train.get(k) is not None}
    if train.get("method") == "lora" and isinstance(train.get("lora"), dict):
        settings["lora"] = fmt_setting(train["lora"])
    if train.get("method") == "setfit" and isinstance(train.get("setfit"), dict):
        settings["setfit"] = fmt_setting(train["setfit"])
    seed = run.manifest.get("seed", run.protocol.get("seed"))
    if seed is not None:
        settings["seed"] = fmt_setting(seed)
    precision = dig(run.manifest, "environment", "precision")
    if precision:
        settings["precision used"] = fmt_setting(precision)
    return settings


def training(run: RunData) -> str | None:
    train = mapping(run.protocol.get("train"))
    validation = mapping(run.metrics.get("validation"))
    if not run.log_history and not train and not validation:
        return None
    parts: list[str | None] = []
    losses, metrics = curves(run.log_history)
    if losses or metrics:
        parts.append(plots.training_curves(losses, metrics))
    else:
        parts.append(note("No training log (training/log_history.json is absent or empty)."))
    summary: dict[str, Any] = next(
        (e for e in reversed(run.log_history) if "train_runtime" in e or "train_loss" in e), {}
    )
    facts: dict[str, Any] = {}
    if summary:
        facts["steps"] = summary.get("step")
        if (epoch := number(summary.get("epoch"))) is not None:
            facts["epochs"] = fmt_setting(round(epoch, 2))
        facts["mean train loss"] = summary.get("train_loss")
        if (secs := number(summary.get("train_runtime"))) is not None:
            facts["training time"] = fmt_duration(secs)
    for key, value in validation.items():
        facts[f"validation {key}"] = value
    if (eff := number(run.metrics.get("padding_efficiency"))) is not None:
        facts["padding efficiency"] = eff
    if facts:
        parts.append(kv_table({k: v for k, v in facts.items() if v is not None}))
    if train:
        parts.append(details("training settings (protocol.yaml)", kv_table(training_settings(run))))
    if run.log_history:
        parts.append(para(f"{len(run.log_history)} log entries."))
    return join(parts)
