"""Apply dotted-path values (``train.learning_rate``) to a protocol and validate the result again.

Kept apart from the search schema and space so the schema's own validator can call it without the
schema and the sampler importing each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def walk(raw: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    parts = path.split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"{path!r} is not a protocol setting")
        node = node[part]
        if node is None:
            raise KeyError(f"{'.'.join(parts[: i + 1])} is not set, so {path!r} cannot be searched")
    if not isinstance(node, dict) or parts[-1] not in node:
        raise KeyError(f"{path!r} is not a protocol setting")
    return node, parts[-1]


def with_params(protocol: Any, params: dict[str, Any], context: Mapping[str, Any] | None) -> Any:
    """``protocol`` with each dotted path set to its value and without ``search``, re-validated
    with the same validation ``context`` (the task registry) as a protocol file.

    Raises KeyError for a path the protocol does not have, and pydantic's ValidationError (a
    ValueError) for a value the schema refuses.
    """
    raw = protocol.model_dump(mode="python", exclude={"search"})
    for path, value in params.items():
        node, key = walk(raw, path)
        node[key] = value
    return type(protocol).model_validate(raw, context=context)
