"""From a search space to concrete protocols: sample a trial's values, apply them, find the defaults.

A trial's configuration is always a complete, validated :class:`Protocol` with the values applied
and the ``search`` section removed, so a trial trains exactly like ``tuneproof run`` would on that
file, and the chosen one can be written out as a protocol that re-runs without search.
"""

from __future__ import annotations

from typing import Any

from tuneproof.search.apply import walk, with_params
from tuneproof.search.schema import CategoricalParam, FloatParam, IntParam, SearchSpec

__all__ = ["contains", "current_values", "grid_space", "suggest", "with_params"]


def current_values(protocol: Any, spec: SearchSpec) -> dict[str, Any]:
    """The protocol's own value of every searched setting: the configuration the search must beat."""
    raw = protocol.model_dump(mode="python", exclude={"search"})
    out = {}
    for path in spec.space:
        node, key = walk(raw, path)
        out[path] = node[key]
    return out


def contains(param: Any, value: Any) -> bool:
    if isinstance(param, CategoricalParam):
        return any(value == c and type(value) is type(c) for c in param.choices)
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(param, IntParam):
        if not float(value).is_integer() or (int(value) - param.low) % param.step:
            return False
    return bool(param.low <= value <= param.high)


def suggest(trial: Any, spec: SearchSpec) -> dict[str, Any]:
    """Ask an Optuna trial for one value per parameter; the dotted path is the Optuna parameter name."""
    values: dict[str, Any] = {}
    for path, p in spec.space.items():
        if isinstance(p, FloatParam):
            values[path] = trial.suggest_float(path, p.low, p.high, log=p.log, step=p.step)
        elif isinstance(p, IntParam):
            values[path] = trial.suggest_int(path, p.low, p.high, step=p.step, log=p.log)
        else:
            values[path] = trial.suggest_categorical(path, p.choices)
    return values


def grid_space(spec: SearchSpec) -> dict[str, list[Any]]:
    return {path: p.grid() for path, p in spec.space.items()}
