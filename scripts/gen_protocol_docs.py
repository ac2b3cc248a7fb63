"""Regenerate docs/protocol.md and docs/protocol.schema.json from the protocol schema.

tests/unit/test_protocol_reference.py fails when either committed file differs from what this writes.
"""

from __future__ import annotations

from pathlib import Path

from tuneproof.protocol.reference import protocol_reference, schema_text

DOCS = Path(__file__).resolve().parents[1] / "docs"


def main() -> None:
    for name, text in (("protocol.md", protocol_reference()), ("protocol.schema.json", schema_text())):
        (DOCS / name).write_text(text, encoding="utf-8")
        print(f"wrote {DOCS / name}")


if __name__ == "__main__":
    main()
