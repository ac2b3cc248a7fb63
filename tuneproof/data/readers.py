"""Read CSV, JSONL, Parquet, plain text or a saved `datasets` folder into rows, one pass, with line numbers.

Readers never stop at the first bad line: every problem is collected with its ``file:line`` so a user
fixes the file once. pandas is not used for CSV/JSONL because it stops at (or silently skips) bad lines.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tuneproof.data.lines import OPENERS, ReadResult, decoded_lines
from tuneproof.errors import Problem

# A single CSV field larger than this is almost certainly a broken quote swallowing the file.
csv.field_size_limit(16 * 1024 * 1024)


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "arrow"
    suffixes = [s.lower() for s in path.suffixes if s.lower() not in OPENERS]
    last = suffixes[-1] if suffixes else ""
    return {
        ".csv": "csv",
        ".tsv": "tsv",
        ".jsonl": "jsonl",
        ".json": "jsonl",
        ".ndjson": "jsonl",
        ".parquet": "parquet",
        ".txt": "text",
        ".conll": "conll",
    }.get(last, "unknown")


def read_csv(path: Path, encoding: str, delimiter: str = ",") -> ReadResult:
    out = ReadResult()
    lines = decoded_lines(path, encoding, out.problems)
    # csv needs a file-like object of lines; track the physical line where each record starts.
    starts: list[int] = []

    def feed() -> Iterator[str]:
        for lineno, text in lines:
            starts.append(lineno)
            yield text

    reader = csv.reader(feed(), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        out.problems.append(Problem(str(path), "file is empty"))
        return out
    except csv.Error as exc:
        out.problems.append(Problem(f"{path}:1", f"malformed header: {exc}"))
        return out
    out.columns = [h.strip() for h in header]
    if len(set(out.columns)) != len(out.columns):
        out.problems.append(Problem(f"{path}:1", "duplicate column names in header"))
    while True:
        consumed = len(starts)
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            out.problems.append(
                Problem(
                    f"{path}:{starts[consumed] if consumed < len(starts) else '?'}", f"malformed CSV: {exc}"
                )
            )
            continue
        line = starts[consumed] if consumed < len(starts) else len(starts)
        if not values:
            continue
        if len(values) != len(out.columns):
            out.problems.append(
                Problem(f"{path}:{line}", f"expected {len(out.columns)} fields, found {len(values)}")
            )
            continue
        row: dict[str, Any] = dict(zip(out.columns, values, strict=True))
        row["_line"] = line
        out.rows.append(row)
    return out


def read_jsonl(path: Path, encoding: str) -> ReadResult:
    out = ReadResult()
    seen: dict[str, None] = {}
    for lineno, text in decoded_lines(path, encoding, out.problems):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            out.problems.append(
                Problem(f"{path}:{lineno}", f"malformed JSON: {exc.msg} (column {exc.colno})")
            )
            continue
        if not isinstance(obj, dict):
            out.problems.append(Problem(f"{path}:{lineno}", "each line must be a JSON object"))
            continue
        seen.update(dict.fromkeys(obj))
        obj["_line"] = lineno
        out.rows.append(obj)
    out.columns = list(seen)
    return out


def read_text(path: Path, encoding: str) -> ReadResult:
    out = ReadResult(columns=["text"])
    for lineno, text in decoded_lines(path, encoding, out.problems):
        if text.strip():
            out.rows.append({"text": text.rstrip("\r\n"), "_line": lineno})
    return out


def read_parquet(path: Path) -> ReadResult:
    import pyarrow.parquet as pq

    out = ReadResult()
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        out.problems.append(Problem(str(path), f"not a readable Parquet file: {exc}"))
        return out
    out.columns = table.column_names
    for i, row in enumerate(table.to_pylist(), start=1):
        row["_line"] = i  # Parquet has no lines; the row number (1-based) stands in
        out.rows.append(row)
    return out


def read_arrow_folder(path: Path) -> ReadResult:
    from datasets import Dataset, DatasetDict, load_from_disk

    out = ReadResult()
    try:
        ds = load_from_disk(str(path))
    except Exception as exc:  # datasets raises FileNotFoundError/ValueError/ArrowInvalid variously
        out.problems.append(Problem(str(path), f"not a saved `datasets` folder: {exc}"))
        return out
    if isinstance(ds, DatasetDict):
        out.problems.append(Problem(str(path), "holds several splits; point at one split's folder"))
        return out
    assert isinstance(ds, Dataset)
    out.columns = list(ds.column_names)
    for i, row in enumerate(ds, start=1):
        row = dict(row)
        row["_line"] = i
        out.rows.append(row)
    return out


def read_file(path: Path, fmt: str, encoding: str) -> ReadResult:
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt == "csv":
        return read_csv(path, encoding)
    if fmt == "tsv":
        return read_csv(path, encoding, delimiter="\t")
    if fmt == "jsonl":
        return read_jsonl(path, encoding)
    if fmt == "parquet":
        return read_parquet(path)
    if fmt == "arrow":
        return read_arrow_folder(path)
    if fmt == "text":
        return read_text(path, encoding)
    if fmt == "conll":
        from tuneproof.data.conll import read_conll

        return read_conll(path, encoding)
    return ReadResult(problems=[Problem(str(path), f"unknown format {fmt!r}; set data.format")])


__all__ = ["ReadResult", "detect_format", "read_file"]
