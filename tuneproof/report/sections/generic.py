"""Catch-all for metrics no section claims, so a new task's results are visible before it has a renderer."""

from __future__ import annotations

from collections.abc import Callable

from tuneproof.report.fmt import is_metric_entry
from tuneproof.report.markup import details, generic_value, h3, join
from tuneproof.report.run_data import RunData

# metrics.json keys every section reads as context (the header, the metrics table intro...).
CONTEXT_KEYS = frozenset(
    {
        "task",
        "split",
        "n",
        "labels",
        "confidence",
        "bootstrap_samples",
        "interval",
        "model",
        "baselines",
        "comparisons",
        "validation",
        "padding_efficiency",
    }
)


def other_results(run: RunData, claimed: frozenset[str]) -> str | None:
    parts = []
    for key, value in run.model_metrics.items():
        # Scalar and interval metrics are already in the test-metrics table.
        if f"model.{key}" in claimed or is_metric_entry(value) or value in (None, {}, []):
            continue
        parts.append(h3(key) + generic_value(value))
    for key, value in run.metrics.items():
        if key in CONTEXT_KEYS or key in claimed or value in (None, {}, []):
            continue
        parts.append(details(f"metrics.json: {key}", generic_value(value)))
    return join(parts) or None


def make_other_results(claims: Callable[[], frozenset[str]]) -> Callable[[RunData], str | None]:
    """Binds the catch-all to a claims provider, evaluated at render time so late registrations count."""
    return lambda run: other_results(run, claims())
