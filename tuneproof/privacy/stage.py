"""The audit stage of a run: after evaluation, when the protocol's ``privacy.audit`` asks for it."""

from __future__ import annotations

from typing import Any

from torch import nn

from tuneproof.privacy import membership
from tuneproof.privacy.canary import Canary, exposure
from tuneproof.protocol.schema import Protocol
from tuneproof.tasks.base import Task


def membership_audit(
    task: Task, protocol: Protocol, model: nn.Module, features: dict[str, list[dict[str, Any]]], pad_id: int
) -> dict[str, Any]:
    """Membership-inference audit of ``model``: training rows against the held-out test rows.

    Returns ``{"membership_auc": {value, low, high}, "details": {...}}``. Both sides are sampled
    with the protocol's seed, at most ``privacy.audit.max_rows`` each.
    """
    spec = protocol.privacy.audit if protocol.privacy is not None else None
    if spec is None:
        raise ValueError("the protocol has no privacy.audit section")
    train = features["train"]
    members = membership.sample_rows(train, spec.max_rows, protocol.seed)
    non_members = membership.sample_rows(features["test"], spec.max_rows, protocol.seed + 1)
    collate, loss_fn = task.collate(pad_id), task.loss_fn(train)
    result = membership.audit(
        membership.per_row_losses(model, members, collate, loss_fn),
        membership.per_row_losses(model, non_members, collate, loss_fn),
        protocol.evaluate.confidence,
        spec.bootstrap_samples,
        protocol.seed,
    )
    result["details"]["max_rows"] = spec.max_rows
    return result


# What the manifest and the model card state about a DP run: the guarantee and how it was obtained.
BUDGET_KEYS = (
    "epsilon",
    "delta",
    "accountant",
    "target_epsilon",
    "noise_multiplier",
    "max_grad_norm",
    "sample_rate",
    "expected_batch_size",
    "steps",
    "sampling",
)


def dp_budget(record: dict[str, Any]) -> dict[str, Any]:
    """The privacy budget a DP-SGD run spent, from the training loop's record."""
    return {key: record.get(key) for key in BUDGET_KEYS}


def add_to_metrics(metrics: dict[str, Any], audit: dict[str, Any]) -> None:
    """The AUC goes where gates look (``model.membership_auc``); the details under ``privacy``."""
    metrics.setdefault("model", {})["membership_auc"] = audit["membership_auc"]
    metrics.setdefault("privacy", {})["membership_audit"] = audit["details"]


def canary_audit(
    protocol: Protocol, model: nn.Module, tokenizer: Any, canaries: list[Canary], metrics: dict[str, Any]
) -> None:
    """Exposure of the planted canaries: ``model.canary_exposure`` (mean, bits) and the details."""
    spec = protocol.privacy.audit.canaries if protocol.privacy and protocol.privacy.audit else None
    if spec is None:
        raise ValueError("the protocol plants no canaries (privacy.audit.canaries)")
    result = exposure(model, tokenizer, canaries, spec, protocol.seed)
    metrics.setdefault("model", {})["canary_exposure"] = result["canary_exposure"]
    metrics.setdefault("privacy", {})["canaries"] = {
        **result["details"],
        "repeats": spec.repeats,
        "note": "canary rows are added to the training features only; data/ holds the split without them",
    }
