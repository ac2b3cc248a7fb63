"""Numbered, decoded lines of a (possibly compressed) text file, and the result every reader returns.

Shared by the table readers and the CoNLL reader, which is why it lives apart from both.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import lzma
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tuneproof.errors import Problem

OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}


@dataclass
class ReadResult:
    rows: list[dict[str, Any]] = field(default_factory=list)  # each has "_line": 1-based line of the row
    columns: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    n_rows: int = 0  # rows read, also when they were streamed rather than kept in ``rows``


def open_text(path: Path, encoding: str) -> IO[bytes]:
    opener = OPENERS.get(path.suffix.lower())
    return opener(path, "rb") if opener else path.open("rb")  # type: ignore[operator]


def decoded_lines(path: Path, encoding: str, problems: list[Problem]) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) and record undecodable lines instead of failing the whole file."""
    decoder_factory = codecs.getincrementaldecoder(encoding)
    with open_text(path, encoding) as fh:
        for lineno, raw in enumerate(fh, start=1):
            if (
                lineno == 1
                and raw.startswith(codecs.BOM_UTF8)
                and encoding.lower().replace("-", "") == "utf8"
            ):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                yield lineno, decoder_factory().decode(raw, final=True)
            except UnicodeDecodeError as exc:
                problems.append(Problem(f"{path}:{lineno}", f"not valid {encoding} (byte {exc.start})"))
