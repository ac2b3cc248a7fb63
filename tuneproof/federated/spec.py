"""The ``federated:`` protocol section: the sites, the rounds and the aggregation.

Kept out of ``protocol/schema.py`` (which only names it) so the federation's settings live next to
the code that reads them. Imports nothing from tuneproof but pydantic models, so the schema can
import it without a cycle.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_SITE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _PackageFile(_Strict):
    # The site protocol is validated again as a whole (site.site_protocol), where the schema's own
    # PackageFile checks the name and keeps the path inside the package; this cannot import it.
    package: str = Field(description="import name of the package holding the site's file")
    path: str = Field(description="path inside the package folder")


class SiteSpec(_Strict):
    name: str = Field(description="the site's name: its client's node config and its folder")
    files: list[str | _PackageFile] = Field(
        min_length=1, description="the site's own data files, read only by that site's client"
    )

    @field_validator("name")
    @classmethod
    def _safe(cls, v: str) -> str:
        if not _SITE.fullmatch(v):
            raise ValueError("must be 1-32 letters, digits, '_' or '-', starting with a letter or digit")
        return v


class SiteFloor(_Strict):
    """A floor on every site: the lower bound of each site's test interval must reach ``min``."""

    metric: Literal["accuracy", "macro_f1"] = Field(description="the test metric every site must reach")
    min: float = Field(description="the floor for the lower bound of each site's interval")


class BeatsAlone(_Strict):
    """The federated model must beat, at every site, that site's model trained alone.

    Each site trains a model on its own train split with the same recipe (the protocol's training
    settings, for the federation's total local epochs or steps: rounds x local), scores both on its
    own test split with the same bootstrap resamples, and sends both confusion replicates; the
    server takes the paired difference federated - alone, per site and pooled over sites.
    """

    metric: Literal["accuracy", "macro_f1"] = Field(
        "accuracy", description="the test metric compared, federated minus the site's own model"
    )
    margin: float = Field(
        0.0,
        description="the lower bound of each site's paired interval (federated - alone) must exceed this",
    )


class FederatedSpec(_Strict):
    sites: list[SiteSpec] = Field(min_length=2, description="two or more sites; each keeps its data")
    rounds: Annotated[int, Field(ge=1, le=1000)] = Field(3, description="federated rounds")
    clients_per_round: Annotated[int, Field(ge=1)] | None = Field(
        None, description="sites sampled for each round's training (default: all)"
    )
    local_epochs: Annotated[int, Field(ge=1, le=100)] | None = Field(
        1, description="passes over the site's train split per round (or give local_steps)"
    )
    local_steps: Annotated[int, Field(ge=1)] | None = Field(
        None, description="optimizer steps per round at each site instead of local_epochs"
    )
    strategy: Literal["fedavg", "fedprox"] = Field(
        "fedavg", description="Flower's aggregation: FedAvg, or FedProx (a proximal term at each site)"
    )
    proximal_mu: Annotated[float, Field(ge=0)] = Field(
        0.01, description="fedprox: weight of the proximal term pulling local weights to the global ones"
    )
    secure_aggregation: bool = Field(
        False,
        description=(
            "aggregate with Flower's SecAgg+: each site masks its update, the server only unmasks "
            "the weighted sum (FedAvg up to SecAgg+'s quantisation; docs/federated.md)"
        ),
    )
    secagg_clipping_range: Annotated[float, Field(gt=0)] = Field(
        8.0,
        description=(
            "secure_aggregation: weights are quantised on [-range, range]; a site whose weights "
            "reach it refuses to send (a wider range quantises more coarsely)"
        ),
    )
    round_timeout: Annotated[float, Field(gt=0)] = Field(
        600.0, description="seconds the server waits for a round's replies; a missing site is left out"
    )
    min_sites: Annotated[int, Field(ge=1)] | None = Field(
        None,
        description="a round with fewer replies than this fails the federation (default: clients_per_round)",
    )
    site_floor: list[SiteFloor] = Field(
        default_factory=list, description="gates on every site's own test split (lower bound >= min)"
    )
    beats_site_alone: BeatsAlone | None = Field(
        None,
        description=(
            "a gate: the federated model beats each site's model trained alone on its own data, "
            "on a paired bootstrap interval on that site's test split (each site trains one more model)"
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> FederatedSpec:
        names = [s.name for s in self.sites]
        if len(set(names)) != len(names):
            raise ValueError("federated.sites: site names must be unique")
        if self.clients_per_round is not None and self.clients_per_round > len(self.sites):
            raise ValueError(f"federated.clients_per_round: at most the {len(self.sites)} sites")
        if self.local_steps is not None and self.local_epochs not in (None, 1):
            raise ValueError("federated: give local_epochs or local_steps, not both")
        if self.min_sites is not None and self.min_sites > self.per_round:
            raise ValueError(f"federated.min_sites: at most clients_per_round ({self.per_round})")
        if self.secure_aggregation and self.per_round < 2:
            # SecAgg+ masks one site's update with the others'; alone, there is nothing to hide it in.
            raise ValueError("federated.secure_aggregation: needs clients_per_round of 2 or more")
        return self

    @property
    def per_round(self) -> int:
        return self.clients_per_round or len(self.sites)

    @property
    def required(self) -> int:
        return self.min_sites or self.per_round
