"""The protocol's data files as partitions, and one partition read, validated and cleaned on a worker.

A JSONL file is cut into line ranges (``data.engine.partition_rows`` lines each, found by one scan
for newline bytes per file, itself a task), so one large file spreads over the workers and every
row still carries its ``file:line``. Other formats (CSV, whose quoted fields can span lines;
Parquet; compressed files) are one partition per file, read by the local stage's own reader.

Each row is checked and cleaned with the local stage's functions (``categorical_target``,
``normalize_text``, ``dedup_key``); the per-row checks below mirror
``tuneproof.data.prepare.read_and_validate``, whose loop is not a function of one row that could be
called from here (a hook the local stage could expose: ``validate_row(raw, path, split)``).
"""

from __future__ import annotations

import codecs
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuneproof.data.clean import dedup_key, normalize_text
from tuneproof.data.lines import OPENERS
from tuneproof.data.prepare import categorical_target
from tuneproof.data.readers import ReadResult, detect_format, read_file
from tuneproof.errors import Problem
from tuneproof.protocol.schema import Protocol

# Problems each partition sends back in full; the rest are only counted (a million bad rows must
# not become a million objects on the client).
MAX_PROBLEMS_PER_PARTITION = 50
# Row order across the whole input: source number in the high bits, line number in the low ones.
_LINE_BITS = 40


@dataclass(frozen=True)
class PartitionSpec:
    source: int  # position of the file among the protocol's sources
    split: str | None  # the user's split for data.splits, None for pooled data.files
    path: str
    fmt: str
    start_byte: int = 0
    first_line: int = 1
    lines: int | None = None  # None: the whole file


@dataclass
class PartitionStats:
    read: int = 0
    kept_out: int = 0
    empty: list[str] = field(default_factory=list)
    emptied: list[str] = field(default_factory=list)
    emptied_count: int = 0
    empty_count: int = 0
    columns: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0


def line_offsets(path: str, every: int) -> list[tuple[int, int]]:
    """``(byte offset, line number)`` of line 1 and of every ``every``-th line after it."""
    out = [(0, 1)]
    pos, line = 0, 1
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            nl = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
            for i in nl:
                line += 1
                if (line - 1) % every == 0:
                    out.append((pos + int(i) + 1, line))
            pos += len(chunk)
    if out[-1][0] >= pos and len(out) > 1:
        out.pop()  # the file ends with a newline: no line starts there
    return out


def plan(
    protocol: Protocol, files: list[tuple[str | None, Path]], offsets: list[list[tuple[int, int]]]
) -> list[PartitionSpec]:
    """Partitions of every file; ``offsets`` from ``line_offsets`` (empty for files read whole)."""
    specs: list[PartitionSpec] = []
    for source, ((split, path), offs) in enumerate(zip(files, offsets, strict=True)):
        fmt = splittable_format(protocol, path)
        if fmt != "jsonl" or not offs:
            specs.append(PartitionSpec(source, split, str(path), fmt))
            continue
        for j, (start, first) in enumerate(offs):
            lines = offs[j + 1][1] - first if j + 1 < len(offs) else None
            specs.append(PartitionSpec(source, split, str(path), fmt, start, first, lines))
    return specs


def splittable_format(protocol: Protocol, path: Path) -> str:
    fmt = protocol.data.format if protocol.data.format != "auto" else detect_format(path)
    if fmt == "jsonl" and path.suffix.lower() in OPENERS:
        return "jsonl-whole"  # compressed: no seeking to a line
    return fmt


def _read_jsonl_range(spec: PartitionSpec, encoding: str) -> ReadResult:
    # The messages and line numbering of readers.read_jsonl, over one line range.
    out = ReadResult()
    seen: dict[str, None] = {}
    decoder = codecs.getincrementaldecoder(encoding)
    with open(spec.path, "rb") as fh:
        fh.seek(spec.start_byte)
        lineno = spec.first_line - 1
        for raw in fh:
            lineno += 1
            if spec.lines is not None and lineno >= spec.first_line + spec.lines:
                break
            if (
                lineno == 1
                and raw.startswith(codecs.BOM_UTF8)
                and encoding.lower().replace("-", "") == "utf8"
            ):
                raw = raw[len(codecs.BOM_UTF8) :]
            where = f"{spec.path}:{lineno}"
            try:
                text = decoder().decode(raw, final=True)
            except UnicodeDecodeError as exc:
                out.problems.append(Problem(where, f"not valid {encoding} (byte {exc.start})"))
                continue
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                out.problems.append(Problem(where, f"malformed JSON: {exc.msg} (column {exc.colno})"))
                continue
            if not isinstance(obj, dict):
                out.problems.append(Problem(where, "each line must be a JSON object"))
                continue
            seen.update(dict.fromkeys(obj))
            obj["_line"] = lineno
            out.rows.append(obj)
    out.columns = list(seen)
    return out


def extra_columns(protocol: Protocol) -> list[str]:
    slices = [s.column for s in protocol.evaluate.slices if s.by == "column"]
    return list(dict.fromkeys([*protocol.data.metadata_columns, *slices]))


def key_hash(text: str) -> int:
    """64-bit content hash (signed, to sit in an int64 column) of a text's exact-duplicate key."""
    return int.from_bytes(
        hashlib.blake2b(dedup_key(text).encode(), digest_size=8).digest(), "big", signed=True
    )


def load_partition(protocol: Protocol, spec: PartitionSpec) -> tuple[pd.DataFrame, PartitionStats]:
    """Read, check and normalise one partition: the rows kept and what happened to the others."""
    data, cleaning = protocol.data, protocol.cleaning
    if spec.fmt == "jsonl" and (spec.start_byte or spec.lines is not None):
        result = _read_jsonl_range(spec, data.encoding)
    else:
        fmt = "jsonl" if spec.fmt == "jsonl-whole" else spec.fmt
        result = read_file(Path(spec.path), fmt, data.encoding)
    stats = PartitionStats(read=len(result.rows), columns=result.columns)
    problems = list(result.problems)
    check = categorical_target(data.labels)
    extra = extra_columns(protocol)
    prefix = f"{spec.split}/" if spec.split else ""
    name = Path(spec.path).name
    records: list[dict[str, Any]] = []
    for raw in result.rows:
        line = raw["_line"]
        where = f"{spec.path}:{line}"
        if any(str(raw.get(c)) not in set(v) for c, v in data.keep_if.items()):
            stats.kept_out += 1
            continue
        text = raw.get(data.text_column)
        if text is None or (isinstance(text, str) and not text.strip()):
            if cleaning.drop_empty:
                stats.empty_count += 1
                if len(stats.empty) < 20:
                    stats.empty.append(where)
                continue
            problems.append(Problem(where, f"empty text in column {data.text_column!r}"))
            continue
        if not isinstance(text, str):
            problems.append(Problem(where, f"text must be a string, got {type(text).__name__}"))
            continue
        label = None
        if data.label_column is not None:
            label, err = check(raw.get(data.label_column))
            if err is not None:
                problems.append(Problem(where, err))
                continue
        clean = normalize_text(text, cleaning)
        row_id = f"{prefix}{name}:{line}"
        if not clean and cleaning.drop_empty:
            stats.emptied_count += 1
            if len(stats.emptied) < 20:
                stats.emptied.append(row_id)
            continue
        rec = {
            "row_id": row_id,
            "split": spec.split or "",
            "text": clean,
            "label": label,
            "_order": (spec.source << _LINE_BITS) | line,
            "_h": key_hash(clean),
            "_len": len(clean.split()),
        }
        for col in extra:
            v = raw.get(col)
            rec[col] = None if v is None else str(v)
        records.append(rec)
    stats.problem_count = len(problems)
    stats.problems = problems[:MAX_PROBLEMS_PER_PARTITION]
    return frame(records, extra), stats


def frame(records: list[dict[str, Any]], extra: list[str]) -> pd.DataFrame:
    """Rows as the typed frame every partition shares (an empty partition has the same columns)."""
    cols = ["row_id", "split", "text", "label", "_order", "_h", "_len", *extra]
    df = pd.DataFrame.from_records(records, columns=cols)
    types: dict[str, Any] = {c: "object" for c in ("row_id", "split", "text", "label", *extra)}
    types.update(_order="int64", _h="int64", _len="int64")
    return df.astype(types)
