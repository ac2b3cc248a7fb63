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
    out.rows = list(iter_csv(path, encoding, out, delimiter))
    return out


def iter_csv(path: Path, encoding: str, out: ReadResult, delimiter: str = ",") -> Iterator[dict[str, Any]]:
    """The rows of a CSV file one at a time; columns and problems go to ``out`` as they are found."""
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
        return
    except csv.Error as exc:
        out.problems.append(Problem(f"{path}:1", f"malformed header: {exc}"))
        return
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
        yield row


def read_jsonl(path: Path, encoding: str) -> ReadResult:
    out = ReadResult()
    out.rows = list(iter_jsonl(path, encoding, out))
    return out


def iter_jsonl(path: Path, encoding: str, out: ReadResult) -> Iterator[dict[str, Any]]:
    """The objects of a JSONL file one at a time; ``out.columns`` is complete once it is exhausted."""
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
        yield obj
    out.columns = list(seen)


def read_text(path: Path, encoding: str) -> ReadResult:
    out = ReadResult(columns=["text"])
    out.rows = list(iter_text(path, encoding, out))
    return out


def iter_text(path: Path, encoding: str, out: ReadResult) -> Iterator[dict[str, Any]]:
    out.columns = ["text"]
    for lineno, text in decoded_lines(path, encoding, out.problems):
        if text.strip():
            yield {"text": text.rstrip("\r\n"), "_line": lineno}


def read_parquet(path: Path) -> ReadResult:
    out = ReadResult()
    out.rows = list(iter_parquet(path, out))
    return out


def iter_parquet(path: Path, out: ReadResult, batch_rows: int = 65_536) -> Iterator[dict[str, Any]]:
    """Rows of a Parquet file, decoded to Python a batch at a time rather than the whole table."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        out.columns = list(pf.schema_arrow.names)
        batches = pf.iter_batches(batch_size=batch_rows)
        i = 0
        for batch in batches:
            for row in batch.to_pylist():
                i += 1
                row["_line"] = i  # Parquet has no lines; the row number (1-based) stands in
                yield row
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        out.problems.append(Problem(str(path), f"not a readable Parquet file: {exc}"))


def read_arrow_folder(path: Path) -> ReadResult:
    out = ReadResult()
    out.rows = list(iter_arrow_folder(path, out))
    return out


def iter_arrow_folder(path: Path, out: ReadResult) -> Iterator[dict[str, Any]]:
    from datasets import Dataset, DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(path))
    except Exception as exc:  # datasets raises FileNotFoundError/ValueError/ArrowInvalid variously
        out.problems.append(Problem(str(path), f"not a saved `datasets` folder: {exc}"))
        return
    if isinstance(ds, DatasetDict):
        out.problems.append(Problem(str(path), "holds several splits; point at one split's folder"))
        return
    assert isinstance(ds, Dataset)
    out.columns = list(ds.column_names)
    for i, row in enumerate(ds, start=1):
        row = dict(row)
        row["_line"] = i
        yield row


def read_file(path: Path, fmt: str, encoding: str) -> ReadResult:
    out, rows = stream_file(path, fmt, encoding)
    out.rows = list(rows)
    out.n_rows = len(out.rows)
    return out


def stream_file(
    path: Path, fmt: str, encoding: str, out: ReadResult | None = None
) -> tuple[ReadResult, Iterator[dict[str, Any]]]:
    """The rows of a file as an iterator, so a caller can keep only what it needs of each row.

    The returned ``ReadResult`` holds no rows; its ``columns`` and ``problems`` are filled in as the
    iterator runs (complete once it is exhausted). ``out``: where to put them (a capped problem list)."""
    out = out if out is not None else ReadResult()
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt in ("csv", "tsv"):
        return out, iter_csv(path, encoding, out, delimiter="\t" if fmt == "tsv" else ",")
    if fmt == "jsonl":
        return out, iter_jsonl(path, encoding, out)
    if fmt == "parquet":
        return out, iter_parquet(path, out)
    if fmt == "arrow":
        return out, iter_arrow_folder(path, out)
    if fmt == "text":
        return out, iter_text(path, encoding, out)
    if fmt == "conll":
        from tuneproof.data.conll import read_conll

        whole = read_conll(path, encoding)
        out.columns = whole.columns
        out.problems.extend(whole.problems)
        return out, iter(whole.rows)
    out.problems.append(Problem(str(path), f"unknown format {fmt!r}; set data.format"))
    return out, iter(())


__all__ = ["ReadResult", "detect_format", "read_file", "stream_file"]
