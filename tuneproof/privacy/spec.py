"""The protocol's ``privacy:`` section."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class CanarySpec(BaseModel):
    """Secret strings planted in the training data of a causal LM, to measure what it memorised."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(4, ge=1, le=64, description="distinct canaries planted in the training split")
    repeats: int = Field(1, ge=1, le=100, description="how many training rows carry each canary")
    digits: int = Field(6, ge=3, le=12, description="random digits in each secret")
    candidates: int = Field(
        1000, ge=10, le=100_000, description="random secrets of the same form each canary is ranked among"
    )


class AuditSpec(BaseModel):
    """A loss-based membership-inference audit, run after evaluation.

    The attacker's score is minus the model's loss on a row; training rows ("members") against
    held-out test rows ("non-members"). The AUC is 0.5 when losses reveal nothing about membership.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_rows: int = Field(500, ge=10, le=100_000, description="rows per side, drawn with the protocol's seed")
    bootstrap_samples: int = Field(1000, ge=100, le=100_000)
    canaries: CanarySpec | None = Field(
        None, description="plant secret canaries in the training split (causal language-model tasks)"
    )


class PrivacySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    audit: AuditSpec | None = Field(None, description="membership-inference audit of the trained model")


AUDIT_METRICS = ("membership_auc",)
CANARY_METRICS = ("canary_exposure",)
