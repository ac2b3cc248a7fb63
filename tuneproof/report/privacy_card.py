"""The model card's "Privacy" section: the differential-privacy guarantee the weights carry (as the
run's manifest records it) and what the memorisation audit measured."""

from __future__ import annotations

from typing import Any

from tuneproof.report.fmt import fmt_interval, fmt_num
from tuneproof.report.run_data import RunData, mapping


def _row(name: str, value: Any) -> str:
    text = "—" if value is None else str(value)
    return f"| {name} | {text.replace('|', '/').replace('<', '&lt;')} |"


def card_section(run: RunData) -> str | None:
    """Markdown, or None when the run neither trained with DP nor audited its model."""
    # The manifest holds the budget of the weights shipped; metrics.json has the same record.
    budget = mapping(mapping(run.manifest.get("privacy")).get("dp_sgd")) or mapping(
        mapping(run.metrics.get("privacy")).get("dp_sgd")
    )
    auc = run.model_metrics.get("membership_auc")
    exposure = run.model_metrics.get("canary_exposure")
    if not budget and auc is None and exposure is None:
        return None
    lines = ["## Privacy", ""]
    if budget:
        lines += [
            f"Trained with DP-SGD (Opacus): the weights are ({fmt_num(budget.get('epsilon'))}, "
            f"{budget.get('delta')})-differentially private with respect to one training row, as the "
            f"{budget.get('accountant')} accountant states it for every step the run took.",
            "",
            "| | |",
            "|---|---|",
            _row("epsilon spent", fmt_num(budget.get("epsilon"))),
            _row("target epsilon", fmt_num(budget.get("target_epsilon"))),
            _row("delta", budget.get("delta")),
            _row("accountant", budget.get("accountant")),
            _row("noise multiplier", fmt_num(budget.get("noise_multiplier"))),
            _row("clipping norm", fmt_num(budget.get("max_grad_norm"))),
            _row("sampling rate", fmt_num(budget.get("sample_rate"), 4)),
            _row("expected batch", budget.get("expected_batch_size")),
            _row("steps", budget.get("steps")),
        ]
    else:
        lines.append("Trained without differential privacy: no bound on what the weights reveal about a row.")
    if auc is not None:
        lines += [
            "",
            f"Membership-inference audit (loss attack, training rows against held-out test rows): "
            f"AUC {fmt_interval(auc)}; 0.5 means the losses reveal nothing. A weak attack finding "
            "nothing is not a guarantee.",
        ]
    if exposure is not None:
        lines += ["", f"Canary exposure: {fmt_num(mapping(exposure).get('value', exposure))} bits (mean)."]
    return "\n".join(lines)
