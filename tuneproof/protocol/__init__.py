"""Protocol stage: the schema and an inert loader."""

from tuneproof.protocol.loader import (
    LoadedProtocol,
    dump_protocol,
    load_protocol,
    parse_protocol,
    validate_protocol,
    validation_context,
)
from tuneproof.protocol.schema import Protocol

__all__ = [
    "LoadedProtocol",
    "Protocol",
    "dump_protocol",
    "load_protocol",
    "parse_protocol",
    "validate_protocol",
    "validation_context",
]
