"""The report's privacy section: the DP-SGD budget, the membership-inference audit and the
canaries' exposure."""

from __future__ import annotations

from typing import Any

from tuneproof.report.fmt import fmt_interval, fmt_num
from tuneproof.report.markup import h3, join, kv_table, note, para, table
from tuneproof.report.run_data import RunData, mapping, number, sequence


def privacy(run: RunData) -> str | None:
    section = mapping(run.metrics.get("privacy"))
    parts = [
        _dp_sgd(mapping(section.get("dp_sgd"))),
        _membership(run, mapping(section.get("membership_audit"))),
        _canaries(mapping(section.get("canaries"))),
    ]
    return join(parts) if any(parts) else None


def _dp_sgd(rec: dict[str, Any]) -> str | None:
    if not rec:
        return None
    return join(
        [
            h3("Differentially private training (DP-SGD, Opacus)"),
            para(
                f"Trained with ({fmt_num(rec.get('epsilon'))}, {rec.get('delta')})-differential privacy "
                f"by the {rec.get('accountant')} accountant: per-example gradients clipped and noised, "
                "examples Poisson-sampled at every step."
            ),
            kv_table(
                {
                    "epsilon spent": fmt_num(rec.get("epsilon")),
                    "target epsilon": fmt_num(rec.get("target_epsilon")),
                    "delta": rec.get("delta"),
                    "noise multiplier": fmt_num(rec.get("noise_multiplier")),
                    "clipping norm": fmt_num(rec.get("max_grad_norm")),
                    "sampling rate": fmt_num(rec.get("sample_rate"), 4),
                    "expected batch": rec.get("expected_batch_size"),
                    "steps": rec.get("steps"),
                    "frozen under DP": ", ".join(str(x) for x in sequence(rec.get("frozen_for_dp")))
                    or "none",
                }
            ),
        ]
    )


def _canaries(details: dict[str, Any]) -> str | None:
    rows = [mapping(c) for c in sequence(details.get("canaries"))]
    if not rows:
        return None
    top = number(details.get("max_exposure"))
    return join(
        [
            h3("Canaries"),
            para(
                f"{len(rows)} secret canaries were planted in the training split, each "
                f"{fmt_num(details.get('repeats'))} time(s), and ranked by the model's likelihood among "
                f"{fmt_num(details.get('candidates'))} random secrets of the same form that were never "
                f"planted. Exposure = log2(candidates + 1) - log2(rank): about 1 bit is chance, "
                f"{fmt_num(top)} bits means the planted secret is the model's first choice."
            ),
            table(
                ["canary", "rows", "rank", "exposure (bits)"],
                [[c.get("canary"), c.get("rows"), c.get("rank"), fmt_num(c.get("exposure"))] for c in rows],
            ),
            note(str(details.get("note"))) if details.get("note") else None,
        ]
    )


def _membership(run: RunData, details: dict[str, Any]) -> str | None:
    auc = run.model_metrics.get("membership_auc")
    if not details and auc is None:
        return None
    value = number(mapping(auc).get("value"))
    low = number(mapping(auc).get("low"))
    parts: list[str | None] = [
        para(
            "A membership-inference audit: an attacker who sees the model's loss on a row guesses it was "
            "a training row when the loss is low. The AUC of that guess over training rows against "
            f"held-out test rows is 0.5 when the losses reveal nothing and 1.0 when every training row "
            f"is told apart; {run.confidence:.0%} bootstrap interval, members and non-members "
            "resampled separately."
        ),
        kv_table(
            {
                "membership AUC": fmt_interval(auc),
                "best attacker advantage (TPR - FPR)": fmt_num(details.get("advantage")),
                "training rows (members)": details.get("members"),
                "held-out rows (non-members)": details.get("non_members"),
                "mean loss, members / non-members": " / ".join(
                    fmt_num(details.get(k)) for k in ("member_loss_mean", "non_member_loss_mean")
                ),
                "attack": details.get("attack"),
            }
        ),
    ]
    if low is not None and low > 0.5:
        parts.append(
            note("The interval lies above 0.5: this model's losses reveal which rows it was trained on.")
        )
    elif value is not None:
        parts.append(
            note(
                "The interval includes 0.5: this attack cannot tell training rows from held-out ones. "
                "A weak attack finding nothing is not a guarantee; stronger (calibrated) attacks can."
            )
        )
    return join(parts)
