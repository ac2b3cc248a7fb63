"""The protocol's JSON Schema, generated from the pydantic models, for editors, the docs and the UI.

pydantic writes the structure (types, limits, enums, defaults); this module adds what it cannot know:
the names of the registered tasks (the schema must not import them) and a description for every key,
taken from the field's own ``description`` or, where the model leaves it out, from
:mod:`tuneproof.protocol.descriptions`. Keeping the fallback texts apart keeps ``schema.py`` the one
place that decides what a protocol may hold.
"""

from __future__ import annotations

import copy
from typing import Any, get_args

from pydantic import BaseModel

from tuneproof.protocol.descriptions import DESCRIPTIONS, MODEL_DESCRIPTIONS

SCHEMA_ID = "https://tuneproof.dev/schema/protocol-v1.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def protocol_json_schema() -> dict[str, Any]:
    """The JSON Schema of a protocol file (draft 2020-12), every property described."""
    from tuneproof.protocol.schema import Protocol
    from tuneproof.tasks.registry import task_specs

    schema = copy.deepcopy(Protocol.model_json_schema(mode="validation"))
    defs: dict[str, Any] = schema.setdefault("$defs", {})
    classes = _model_classes(Protocol)
    _describe(schema, "Protocol", classes)
    for name, model in defs.items():
        _describe(model, name, classes)
    # CleaningSpec accepts a plain number for max_removed_fraction (a "before" validator spreads it
    # over every stage); pydantic's schema shows only the object form, so editors would flag it.
    limits = defs["CleaningSpec"]["properties"]["max_removed_fraction"]
    ref = {"$ref": limits.pop("$ref")} if "$ref" in limits else {}
    if ref:
        limits["anyOf"] = [{"type": "number", "minimum": 0.0, "maximum": 1.0}, ref]
    tasks = list(task_specs())
    schema["properties"]["task"]["enum"] = tasks
    schema["$schema"] = JSON_SCHEMA_DIALECT
    schema["$id"] = SCHEMA_ID
    schema["title"] = "tuneproof protocol"
    return schema


def _model_classes(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Every pydantic model reachable from ``root``'s fields, by class name (as ``$defs`` names them)."""
    found: dict[str, type[BaseModel]] = {}

    def visit(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if tp.__name__ in found:
                return
            found[tp.__name__] = tp
            for field in tp.model_fields.values():
                visit(field.annotation)
            return
        for arg in get_args(tp):
            visit(arg)

    visit(root)
    return found


def _describe(model: dict[str, Any], name: str, classes: dict[str, type[BaseModel]]) -> None:
    if "description" not in model and name in MODEL_DESCRIPTIONS:
        model["description"] = MODEL_DESCRIPTIONS[name]
    cls = classes.get(name)
    for key, prop in (model.get("properties") or {}).items():
        if not prop.get("description"):
            text = DESCRIPTIONS.get(f"{name}.{key}")
            if text:
                prop["description"] = text
        field = cls.model_fields.get(key) if cls is not None else None
        if field is not None and field.default_factory is not None and "default" not in prop:
            # pydantic leaves factory defaults out of the schema; editors and the form need them.
            value = field.get_default(call_default_factory=True)
            prop["default"] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value


def missing_descriptions(schema: dict[str, Any]) -> list[str]:
    """``Model.key`` of every property without a description (the docs test wants none)."""
    out = []
    models = {"Protocol": schema, **schema.get("$defs", {})}
    for name, model in models.items():
        for key, prop in (model.get("properties") or {}).items():
            if not prop.get("description"):
                out.append(f"{name}.{key}")
    return out
