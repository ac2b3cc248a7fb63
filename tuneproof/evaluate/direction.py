"""Which way a metric improves: the one rule that gates, model selection, search and the report share."""

from __future__ import annotations

# Metrics where a smaller value is better. A name matches the token itself or a name built from it
# ("general_perplexity", "log_loss", "error_rate"), after dropping a nested path ("model.ece") and an
# "eval_"/"test_" prefix, so task-specific names need no list of their own.
LOWER_IS_BETTER = frozenset(
    {"loss", "log_loss", "ece", "error", "mae", "mse", "rmse", "perplexity", "brier", "wer", "cer"}
)


def lower_is_better(metric: str) -> bool:
    name = metric.rsplit(".", 1)[-1].lower()
    for prefix in ("eval_", "test_"):
        name = name.removeprefix(prefix)
    return any(
        name == token or name.endswith(f"_{token}") or name.startswith(f"{token}_")
        for token in LOWER_IS_BETTER
    )


def direction(metric: str) -> str:
    """Optuna's word for it: ``minimize`` or ``maximize``."""
    return "minimize" if lower_is_better(metric) else "maximize"
