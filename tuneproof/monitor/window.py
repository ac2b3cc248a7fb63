"""Read a production window: a folder of captured JSONL files, or one JSONL, CSV or Parquet file.

A captured record (what ``serve`` writes) is one JSON object per line with at least ``time``,
``route``, ``text`` and ``prediction``. A plain file needs a text column and may carry a label column
(and, for JSONL, a ``prediction`` object). Labels may also come from a separate file, joined on an
``id`` field when both sides have one, else row by row. Every problem is reported with its
``file:line`` before anything is computed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneproof.data.readers import detect_format, read_file, read_jsonl
from tuneproof.errors import DataValidationError, Problem
from tuneproof.monitor.drift import MIN_ROWS
from tuneproof.monitor.features import summarize_prediction


@dataclass
class Window:
    texts: list[str]
    predictions: list[dict[str, Any]] | None  # as captured; None: the model predicts them
    labels: list[str] | None
    source: str
    rows_read: int  # before keeping the most recent ``size``
    where: list[str]  # file:line of each kept row, for the report
    # The ``image`` description of each row (capture records of an image model); None: not all have one.
    images: list[dict[str, Any]] | None = None


def _rows(path: Path, problems: list[Problem]) -> list[dict[str, Any]]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith((".jsonl", ".jsonl.gz")))
        if not files:
            problems.append(Problem(str(path), "the folder holds no .jsonl files"))
        rows: list[dict[str, Any]] = []
        for f in files:
            res = read_jsonl(f, "utf-8")
            problems.extend(p for p in res.problems if not _torn_last_line(f, p))
            rows += [{**r, "_file": str(f)} for r in res.rows]
        return rows
    if not path.is_file():
        problems.append(Problem(str(path), "no such file or folder"))
        return []
    fmt = detect_format(path)
    if fmt not in ("jsonl", "csv", "tsv", "parquet"):
        problems.append(
            Problem(str(path), f"a window is JSONL, CSV or Parquet (or a capture folder), not {fmt}")
        )
        return []
    res = read_file(path, fmt, "utf-8")
    problems.extend(res.problems)
    return [{**r, "_file": str(path)} for r in res.rows]


def _torn_last_line(path: Path, problem: Problem) -> bool:
    """A capture file's last line cut off by a killed writer (serve/capture.py documents that such a
    file ends without a newline and that readers skip that line); only for ``.jsonl`` capture files."""
    if path.suffix != ".jsonl" or not problem.message.startswith("malformed JSON"):
        return False
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    last = data.count(b"\n") + 1
    return problem.where == f"{path}:{last}"


def _where(row: dict[str, Any]) -> str:
    return f"{row['_file']}:{row.get('_line', '?')}"


def _label(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value):  # missing or NaN
        return None
    return str(value)


def read_window(
    path: Path,
    size: int,
    task_labels: Sequence[str] | None,
    labels_path: Path | None = None,
    text_column: str = "text",
    label_column: str = "label",
) -> Window:
    """The most recent ``size`` rows of ``path`` (by ``time`` when every row has one, else in file
    order), validated; labels from the window itself or from ``labels_path``."""
    problems: list[Problem] = []
    rows = _rows(path, problems)
    if problems:
        raise DataValidationError(problems, f"window {path}")
    for i, r in enumerate(rows):
        r["_idx"] = i  # position in the files, which a label file without ids follows
    if rows and all(isinstance(r.get("time"), str | int | float) for r in rows):
        if len({type(r["time"]) for r in rows}) == 1:
            rows.sort(key=lambda r: r["time"])  # stable: equal times keep file order
    rows_read = len(rows)
    rows = rows[-size:]
    allowed = set(task_labels) if task_labels else None
    texts: list[str] = []
    preds: list[dict[str, Any]] = []
    labels: list[str | None] = []
    for r in rows:
        text = r.get(text_column)
        if not isinstance(text, str) or not text.strip():
            problems.append(Problem(_where(r), f"needs a non-empty string field {text_column!r}"))
            continue
        texts.append(text)
        if "prediction" in r:
            p = r["prediction"]
            try:
                if not isinstance(p, dict):
                    raise ValueError("'prediction' must be a JSON object")
                summarize_prediction(p)
            except ValueError as exc:
                problems.append(Problem(_where(r), str(exc)))
            else:
                preds.append(p)
        lab = _label(r.get(label_column))
        if lab is not None and allowed is not None and lab not in allowed:
            problems.append(
                Problem(_where(r), f"label {lab!r} is not one of the run's labels {sorted(allowed)}")
            )
        labels.append(lab)
    if preds and len(preds) != len(rows) and not problems:
        problems.append(
            Problem(str(path), "some rows carry a 'prediction' and some do not; give all or none")
        )
    if not problems and len(rows) < MIN_ROWS:
        problems.append(
            Problem(str(path), f"the window has {len(rows)} rows; at least {MIN_ROWS} are needed")
        )
    if labels_path is not None and not problems:
        labels = _joined_labels(labels_path, rows, rows_read, label_column, allowed, problems)
    if problems:
        raise DataValidationError(problems, f"window {path}")
    have = [x for x in labels if x is not None]
    if have and len(have) != len(labels):
        missing = [_where(r) for r, x in zip(rows, labels, strict=True) if x is None][:5]
        raise DataValidationError(
            [Problem(m, f"no {label_column!r}: label every row of the window or none") for m in missing],
            f"window {path}",
        )
    images = [r["image"] for r in rows if isinstance(r.get("image"), dict)]
    return Window(
        texts=texts,
        predictions=preds or None,
        labels=[x for x in labels if x is not None] or None,
        source=str(path),
        rows_read=rows_read,
        where=[_where(r) for r in rows],
        images=images if images and len(images) == len(rows) else None,
    )


def _joined_labels(
    path: Path,
    rows: list[dict[str, Any]],
    rows_read: int,
    label_column: str,
    allowed: set[str] | None,
    problems: list[Problem],
) -> list[str | None]:
    lab_rows = _rows(path, problems)
    if problems:
        return []
    out: dict[int, str | None] = {}
    keyed = all("id" in r for r in rows) and all("id" in r for r in lab_rows)
    by_id: dict[str, dict[str, Any]] = {}
    for r in lab_rows:
        lab = _label(r.get(label_column))
        if lab is None:
            problems.append(Problem(_where(r), f"needs a {label_column!r} field"))
        elif allowed is not None and lab not in allowed:
            problems.append(
                Problem(_where(r), f"label {lab!r} is not one of the run's labels {sorted(allowed)}")
            )
        if keyed:
            by_id[str(r["id"])] = r
    if problems:
        return []
    if keyed:
        for i, r in enumerate(rows):
            match = by_id.get(str(r["id"]))
            if match is None:
                problems.append(Problem(_where(r), f"id {r['id']!r} has no label in {path}"))
            else:
                out[i] = _label(match.get(label_column))
    elif len(lab_rows) != rows_read:
        problems.append(
            Problem(
                str(path),
                f"{len(lab_rows)} labels for {rows_read} window rows; give as many, or an 'id' field on both",
            )
        )
    else:
        out = {i: _label(lab_rows[r["_idx"]].get(label_column)) for i, r in enumerate(rows)}
    return [out.get(i) for i in range(len(rows))]
