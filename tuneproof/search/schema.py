"""The protocol's ``search`` section: what to tune, how to sample it, when to stop, where to store it.

Kept free of imports from ``tuneproof.protocol.schema`` so that module can import this one; the
checks that need the whole protocol (does ``train.learning_rate`` exist, are the bounds legal) are
in :func:`check_search`, which the protocol's own validator calls.

Example::

    search:
      sampler: tpe
      metric: macro_f1
      space:
        train.learning_rate: {type: float, low: 1.0e-5, high: 3.0e-4, log: true}
        train.batch_size: {type: categorical, choices: [16, 32]}
        train.warmup_ratio: {type: float, low: 0.0, high: 0.2}
      budget: {trials: 8, minutes: 8}
      pruner: {type: median, startup_trials: 2}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

# Settings a trial may not change: the precision and thread count are chosen once per process, and
# a per-trial seed would make "better" mean "luckier".
FORBIDDEN_PATHS = {"train.precision", "train.threads"}
SEARCHABLE_PREFIX = "train."


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FloatParam(_Strict):
    type: Literal["float"] = "float"
    low: float
    high: float
    log: bool = Field(False, description="sample uniformly in log space (log-uniform)")
    step: Annotated[float, Field(gt=0)] | None = Field(
        None, description="discretisation; needed by the grid sampler"
    )

    @model_validator(mode="after")
    def _bounds(self) -> FloatParam:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise ValueError("needs finite low < high")
        if self.log and self.low <= 0:
            raise ValueError("log: true needs low > 0")
        if self.log and self.step is not None:
            raise ValueError("give either log or step, not both")
        return self

    def grid(self) -> list[float]:
        if self.step is None:
            raise ValueError("the grid sampler needs `step` (or use a categorical parameter)")
        n = math.floor((self.high - self.low) / self.step + 1e-9)
        return [round(self.low + i * self.step, 12) for i in range(n + 1)]


class IntParam(_Strict):
    type: Literal["int"] = "int"
    low: int
    high: int
    log: bool = False
    step: Annotated[int, Field(ge=1)] = 1

    @model_validator(mode="after")
    def _bounds(self) -> IntParam:
        if self.low >= self.high:
            raise ValueError("needs low < high")
        if self.log and (self.low <= 0 or self.step != 1):
            raise ValueError("log: true needs low > 0 and step 1")
        return self

    def grid(self) -> list[int]:
        return list(range(self.low, self.high + 1, self.step))


class CategoricalParam(_Strict):
    type: Literal["categorical"] = "categorical"
    choices: list[str | int | float | bool | None] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> CategoricalParam:
        if len({repr(c) for c in self.choices}) != len(self.choices):
            raise ValueError("choices has duplicates")
        return self

    def grid(self) -> list[Any]:
        return list(self.choices)


def _param_kind(v: object) -> str:
    kind = v.get("type", "float") if isinstance(v, dict) else getattr(v, "type", "float")
    return {"int": "Int", "categorical": "Categorical"}.get(str(kind), "Float")


Param = Annotated[
    Annotated[FloatParam, Tag("Float")]
    | Annotated[IntParam, Tag("Int")]
    | Annotated[CategoricalParam, Tag("Categorical")],
    Discriminator(_param_kind),
]


class BudgetSpec(_Strict):
    """Stop when either limit is reached. ``trials`` counts every trial of the study, across workers
    and resumptions (an interrupted trial is re-run and not counted twice). ``minutes`` is per
    process: no trial starts after it has passed; a trial already running finishes."""

    trials: Annotated[int, Field(ge=1, le=100_000)] | None = None
    minutes: Annotated[float, Field(gt=0)] | None = None


class PrunerSpec(_Strict):
    """Stop poor trials early from their validation metric at each evaluation (``train.eval_every_steps``).

    ``median``: prune when the trial is worse than the median of earlier trials at the same step,
    after ``startup_trials`` complete trials and ``warmup_steps`` steps. ``hyperband``: successive
    halving over brackets, resources measured in optimizer steps from ``min_resource``.
    """

    type: Literal["median", "hyperband", "none"] = "median"
    startup_trials: Annotated[int, Field(ge=0)] = 2
    warmup_steps: Annotated[int, Field(ge=0)] = 0
    min_resource: Annotated[int, Field(ge=1)] = 1
    reduction_factor: Annotated[int, Field(ge=2)] = 3


class SearchSpec(_Strict):
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    metric: str | None = Field(
        None, description="validation metric to optimise; default the selection metric"
    )
    direction: Literal["maximize", "minimize"] | None = Field(None, description="default from the metric")
    space: dict[str, Param] = Field(description="dotted protocol path (train.*) -> distribution")
    budget: BudgetSpec = BudgetSpec()
    pruner: PrunerSpec = PrunerSpec()
    storage: str | None = Field(
        None, description="Optuna RDB storage URL; default sqlite:///<run folder>/search/study.db"
    )
    study_name: str | None = Field(None, description="default: protocol name + a hash of the protocol")
    seed: int | None = Field(None, description="sampler seed; default the protocol seed")
    include_default: bool = Field(
        True, description="run the protocol's own settings as the first trial, as the reference to beat"
    )
    startup_trials: Annotated[int, Field(ge=1)] = Field(5, description="TPE: random trials before modelling")

    @model_validator(mode="after")
    def _consistent(self) -> SearchSpec:
        if not self.space:
            raise ValueError("`space` needs at least one parameter")
        for path in self.space:
            if not path.startswith(SEARCHABLE_PREFIX) or path in FORBIDDEN_PATHS:
                raise ValueError(
                    f"space key {path!r}: only training settings (train.*) can be searched, "
                    f"except {', '.join(sorted(FORBIDDEN_PATHS))}"
                )
        if self.sampler == "grid":
            for path, param in self.space.items():
                if isinstance(param, FloatParam) and param.step is None:
                    raise ValueError(f"space key {path!r}: the grid sampler needs `step` on float parameters")
        elif self.budget.trials is None and self.budget.minutes is None:
            raise ValueError(
                "budget needs `trials`, `minutes` or both (only the grid sampler has a natural end)"
            )
        if self.storage is not None and "://" not in self.storage:
            raise ValueError("storage must be an RDB URL such as sqlite:///study.db or postgresql://host/db")
        return self

    def grid_size(self) -> int:
        return math.prod(len(p.grid()) for p in self.space.values())


def check_search(protocol: Any, context: Mapping[str, Any] | None) -> None:
    """Cross-checks against the rest of the protocol; raises ValueError with the offending key.

    Every bound and choice is applied to the protocol and validated, so an illegal value (a
    learning rate above 1, a negative warmup) is an error when the protocol loads, not a failed
    trial an hour into the search.
    """
    from tuneproof.search.apply import with_params

    search = protocol.search
    has_validation = (protocol.data.splits is not None and "validation" in protocol.data.splits) or (
        protocol.data.splits is None and protocol.split.validation > 0
    )
    if not has_validation:
        raise ValueError("search needs a validation split: trials are compared on it, never on test")
    from pydantic import ValidationError

    for path, param in search.space.items():
        values = param.grid() if isinstance(param, CategoricalParam) else [param.low, param.high]
        for value in values:
            try:
                with_params(protocol, {path: value}, context)
            except KeyError as exc:
                raise ValueError(f"search.space: {exc.args[0]}") from None
            except ValidationError as exc:
                detail = "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())
                raise ValueError(f"search.space.{path}: value {value!r} is not allowed ({detail})") from None
