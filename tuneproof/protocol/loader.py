"""Read a protocol file into a validated :class:`Protocol`, reporting every problem at once.

Loading is inert: YAML is parsed with a safe loader (no tags that build Python objects), the file
size is capped, duplicate keys are errors, and nothing the protocol names is imported or executed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tuneproof.errors import Problem, ProtocolError
from tuneproof.protocol.schema import Protocol

MAX_PROTOCOL_BYTES = 1_000_000


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that also refuses duplicate mapping keys (PyYAML keeps the last one silently)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


@dataclass(frozen=True)
class LoadedProtocol:
    protocol: Protocol
    path: Path
    text: str
    sha256: str

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


# Parts pydantic adds to an error path for union members and tags; they are not protocol keys.
_UNION_PARTS = {"str", "int", "float", "bool", "list", "dict", "none", "Column", "Length", "PackageFile"}


def problems_from_validation(err: ValidationError) -> list[Problem]:
    problems = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and (p in _UNION_PARTS or "[" in p)))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        problems.append(Problem(_loc(loc), msg))
    return problems


def parse_protocol(text: str, source: str = "<string>") -> Protocol:
    try:
        raw = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProtocolError([Problem(where, f"not valid YAML: {problem}")], source) from None
    if not isinstance(raw, dict):
        raise ProtocolError([Problem("(root)", "a protocol is a YAML mapping")], source)
    try:
        return validate_protocol(raw)
    except ValidationError as exc:
        raise ProtocolError(problems_from_validation(exc), source) from None


def validation_context() -> dict[str, Any]:
    """What the schema's validators need beyond the file: the registered tasks' metadata."""
    from tuneproof.tasks.registry import task_specs

    return {"tasks": task_specs()}


def validate_protocol(raw: dict[str, Any]) -> Protocol:
    """A protocol from already-parsed data; raises pydantic's ValidationError with every problem."""
    return Protocol.model_validate(raw, context=validation_context())


def load_protocol(path: str | Path) -> LoadedProtocol:
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ProtocolError([Problem(str(path), f"cannot read: {exc.strerror}")], str(path)) from None
    if size > MAX_PROTOCOL_BYTES:
        raise ProtocolError(
            [Problem(str(path), f"file is {size} bytes; protocols are capped at {MAX_PROTOCOL_BYTES}")],
            str(path),
        )
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError([Problem(str(path), f"not UTF-8 text (byte {exc.start})")], str(path)) from None
    protocol = parse_protocol(text, str(path))
    return LoadedProtocol(protocol, path.resolve(), text, hashlib.sha256(data).hexdigest())


def dump_protocol(protocol: Protocol) -> str:
    """The protocol as resolved: every default spelled out, so a run folder says exactly what ran."""
    return yaml.safe_dump(protocol.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
