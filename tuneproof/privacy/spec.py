"""The protocol's ``privacy:`` section."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class CanarySpec(BaseModel):
    """Secret strings planted in the training data of a causal LM, to measure what it memorised
    (Carlini et al., 2019, "The Secret Sharer").

    Each canary is ``prefix`` followed by ``length`` symbols drawn from ``alphabet`` (joined by
    spaces), planted ``repeats`` times in the training split.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int = Field(4, ge=1, le=64, description="distinct canaries planted in the training split")
    repeats: int = Field(1, ge=1, le=100, description="how many training rows carry each canary")
    prefix: str = Field("my secret code is", min_length=1, max_length=200)
    alphabet: list[str] = Field(
        default_factory=lambda: list("0123456789"), min_length=2, description="the secret's symbols"
    )
    length: int = Field(6, ge=2, le=16, description="symbols in each secret")
    candidates: int = Field(
        1000, ge=10, le=100_000, description="random secrets of the same form each canary is ranked among"
    )

    @field_validator("alphabet")
    @classmethod
    def _distinct_symbols(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v) or any(not s.strip() or " " in s for s in v):
            raise ValueError("alphabet symbols must be distinct, non-empty and without spaces")
        return v

    @model_validator(mode="after")
    def _enough_secrets(self) -> CanarySpec:
        if len(self.alphabet) ** self.length < 2 * (self.count + self.candidates):
            raise ValueError(
                f"{len(self.alphabet)} symbols ^ length {self.length} leave too few distinct secrets for "
                f"{self.count} canaries and {self.candidates} candidates"
            )
        return self


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


class DpSgdSpec(BaseModel):
    """Differentially private training (DP-SGD, Abadi et al., 2016) with Opacus.

    Give ``target_epsilon`` (the noise multiplier is then chosen by Opacus for the run's steps and
    sampling rate) or ``noise_multiplier`` (the epsilon spent is then reported), not both.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    target_epsilon: float | None = Field(None, gt=0.0, le=100.0)
    noise_multiplier: float | None = Field(None, gt=0.0, le=100.0)
    delta: float = Field(1e-5, gt=0.0, lt=1.0)
    max_grad_norm: float = Field(1.0, gt=0.0, description="per-example gradient clipping norm")
    accountant: Literal["rdp", "prv", "gdp"] = "rdp"

    @model_validator(mode="after")
    def _one_noise_setting(self) -> DpSgdSpec:
        if (self.target_epsilon is None) == (self.noise_multiplier is None):
            raise ValueError("give exactly one of target_epsilon or noise_multiplier")
        return self


class PrivacySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    audit: AuditSpec | None = Field(None, description="membership-inference audit of the trained model")
    dp_sgd: DpSgdSpec | None = Field(None, description="differentially private training with Opacus")


AUDIT_METRICS = ("membership_auc",)
CANARY_METRICS = ("canary_exposure",)
DP_METRICS = ("epsilon",)
