"""The data stage: read, validate, clean, de-duplicate, split and check for leakage, with a report.

Everything that removes a row is counted in the report; everything wrong with the input is
collected and raised once as a :class:`DataValidationError` before any model is touched.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuneproof import fsutil
from tuneproof.data import near_dup
from tuneproof.data.clean import (
    dedup_key,
    find_conflicts,
    near_duplicate_description,
    normalize_text,
    shingle_set,
)
from tuneproof.data.frozen_embeddings import Embedder
from tuneproof.data.guards import removal_problems, split_checks
from tuneproof.data.locate import resolve_location
from tuneproof.data.problems import CappedProblems
from tuneproof.data.readers import ReadResult, stream_file
from tuneproof.data.split import find_leaks, split_indices, straddling_clusters
from tuneproof.errors import DataValidationError, Problem
from tuneproof.protocol.schema import Protocol
from tuneproof.train.imbalance_auto import imbalance_report, small_class_warnings

SPLITS = ("train", "validation", "test")
# Removed rows kept per stage as examples for the report (the error shows the first few).
EXAMPLES_PER_STAGE = 20
TargetCheck = Callable[[Any], tuple[Any, str | None]]
# A target check that needs the whole row (token tags must match the tokens; spans need the text)
# also has ``check_row(raw) -> (text, label, [(line or None, message), ...])``; it then replaces the
# per-column text and label checks for every row.
RowCheck = Callable[[dict[str, Any]], tuple[str | None, Any, list[tuple[int | None, str]]]]
# A hook that rewrites the rows before de-duplication (the PII step); returns them and a report.
FrameHook = Callable[[pd.DataFrame], tuple[pd.DataFrame, dict[str, Any]]]


def categorical_target(allowed: Sequence[str] | None) -> TargetCheck:
    """Labels as strings; JSON numbers and booleans are accepted and turned into their text."""

    def check(value: Any) -> tuple[Any, str | None]:
        if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
            return None, "missing label"
        if isinstance(value, dict | list):
            return None, f"label must be a single value, got {type(value).__name__}"
        label = str(value).strip()
        if allowed is not None and label not in allowed:
            return None, f"unknown label {label!r} (allowed: {', '.join(allowed)})"
        return label, None

    return check


@dataclass
class PreparedData:
    splits: dict[str, pd.DataFrame]  # columns: row_id, text, label, metadata...
    report: dict[str, Any]
    input_hashes: dict[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        return sorted({lab for df in self.splits.values() for lab in df["label"]})


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                h.update(str(p.relative_to(path)).encode())
                h.update(sha256_file(p).encode())
        return h.hexdigest()
    return fsutil.sha256_file(path)


def split_hash(df: pd.DataFrame) -> str:
    """Content hash of a prepared split, independent of the file format it is stored in."""
    h = hashlib.sha256()
    for rec in df[["row_id", "text", "label"]].itertuples(index=False):
        h.update(json.dumps(list(rec), ensure_ascii=False, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()


class _Stages:
    def __init__(self) -> None:
        self.stages: list[dict[str, Any]] = []
        self.removed: Counter[str] = Counter()

    def record(
        self,
        stage: str,
        rows: int,
        removed: int = 0,
        detail: str = "",
        examples: list[dict[str, Any]] | None = None,
        base: int | None = None,
    ) -> None:
        """``base``: the rows the stage's removed fraction is measured against (default: those entering)."""
        entry: dict[str, Any] = {"stage": stage, "rows": rows, "removed": removed, "detail": detail}
        entry["base"] = rows + removed if base is None else base
        if examples:
            entry["examples"] = examples[:EXAMPLES_PER_STAGE]
        self.stages.append(entry)
        if removed:
            self.removed[stage] += removed

    def selected(self) -> int:
        """Rows the protocol selected (read, less those ``keep_if`` left out): the total's base."""
        rows = {s["stage"]: s["rows"] for s in self.stages}
        return int(rows.get("keep_if", rows.get("read", 0)))


def _source_entries(protocol: Protocol) -> list[tuple[str | None, str, Any]]:
    data = protocol.data
    if data.files is not None:
        return [(None, f"data.files[{i}]", loc) for i, loc in enumerate(data.files)]
    assert data.splits is not None
    return [
        (split, f"data.splits.{split}[{i}]", loc)
        for split, locs in data.splits.items()
        for i, loc in enumerate(locs)
    ]


def _check_columns(protocol: Protocol, path: Path, columns: list[str], extra: Sequence[str]) -> list[Problem]:
    data = protocol.data
    wanted = {"data.text_column": data.text_column}
    if data.label_column is not None:
        wanted["data.label_column"] = data.label_column
    for col in data.keep_if:
        wanted[f"data.keep_if.{col}"] = col
    for i, col in enumerate(data.metadata_columns):
        wanted[f"data.metadata_columns[{i}]"] = col
    for i, col in enumerate(extra):
        wanted[f"evaluate.slices[{i}].column"] = col
    return [
        Problem(f"{path}", f"column {col!r} (from {key}) not found; columns are: {', '.join(columns)}")
        for key, col in wanted.items()
        if col not in columns
    ]


def prepare_data(
    protocol: Protocol,
    base_dir: Path,
    token_lengths: Callable[[list[str]], list[int]] | None = None,
    target_check: TargetCheck | None = None,
    text_hook: FrameHook | None = None,
    stratify: bool = True,
) -> PreparedData:
    columns, stages, hashes, sources = read_columns(protocol, base_dir, target_check, stratify)
    embedder = _label_error_embedder(protocol, base_dir)
    return _clean_and_split(
        protocol, columns, stages, hashes, token_lengths, text_hook, stratify, sources, embedder
    )


def _label_error_embedder(protocol: Protocol, base_dir: Path) -> Embedder | None:
    """The frozen base model's embedder when the label-error check asks for embeddings."""
    spec = protocol.cleaning.label_errors
    if spec is None or spec.features != "embeddings":
        return None
    from tuneproof.data.frozen_embeddings import frozen_embedder
    from tuneproof.train.model_source import resolve_model

    return frozen_embedder(resolve_model(protocol.model, base_dir), protocol.model.max_length)


def read_and_validate(
    protocol: Protocol, base_dir: Path, target_check: TargetCheck | None = None, stratify: bool = True
) -> tuple[list[dict[str, Any]], _Stages, dict[str, str], list[tuple[str | None, Path, ReadResult]]]:
    """Read every source and check every row; raise one DataValidationError listing all problems.

    The rows as one dict each; the data stage itself keeps them as columns (:func:`read_columns`)."""
    columns, stages, hashes, sources = read_columns(protocol, base_dir, target_check, stratify)
    names = list(columns)
    rows = [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    return rows, stages, hashes, sources


def read_columns(
    protocol: Protocol, base_dir: Path, target_check: TargetCheck | None = None, stratify: bool = True
) -> tuple[dict[str, list[Any]], _Stages, dict[str, str], list[tuple[str | None, Path, ReadResult]]]:
    """Read every source as a stream, check every row, and keep the accepted rows as columns
    (``row_id``, ``split``, ``text``, ``label``, metadata...): one list per column rather than a
    dict per row. Problems are listed with their ``file:line``, the first
    :data:`~tuneproof.data.problems.PROBLEMS_PER_FILE` of each file, the rest counted; all are
    raised at once as a DataValidationError."""
    data, cleaning = protocol.data, protocol.cleaning
    target_check = target_check or categorical_target(data.labels)
    row_check: RowCheck | None = getattr(target_check, "check_row", None)
    stages = _Stages()
    problems = CappedProblems()
    hashes: dict[str, str] = {}
    sources: list[tuple[str | None, Path, ReadResult]] = []
    slice_columns = [s.column for s in protocol.evaluate.slices if s.by == "column"]
    extra_cols = list(dict.fromkeys([*data.metadata_columns, *slice_columns]))
    cols: dict[str, list[Any]] = {c: [] for c in ("row_id", "split", "text", "label", *extra_cols)}
    keep_if = {c: set(v) for c, v in data.keep_if.items()}
    # A label check is a function of the value alone; most files repeat a few labels many times.
    label_cache: dict[Any, tuple[Any, str | None]] = {}
    empty_lines: list[str] = []
    n_empty = 0
    kept_out = 0
    for split, where_in_protocol, loc in _source_entries(protocol):
        path, problem = resolve_location(loc, base_dir, where_in_protocol)
        if problem is not None:
            problems.append(problem)
            continue
        assert path is not None
        result, stream = stream_file(path, data.format, data.encoding, ReadResult(problems=CappedProblems()))
        hashes[str(path)] = sha256_file(path)
        sources.append((split, path, result))
        # This file's rows and problems, undone if its columns turn out to be missing (JSONL's
        # columns are known only at its end), as when the file was read whole first.
        mark = len(cols["row_id"])
        file_problems = CappedProblems()
        file_kept_out = 0
        file_empty: list[str] = []
        file_n_empty = 0
        prefix = f"{split}/" if split else ""
        name = path.name
        for raw in stream:
            result.n_rows += 1
            line = raw["_line"]
            if keep_if and any(str(raw.get(c)) not in v for c, v in keep_if.items()):
                file_kept_out += 1
                continue
            if row_check is not None:
                text, label, errors = row_check(raw)
                file_problems += [Problem(f"{path}:{ln or line}", msg) for ln, msg in errors]
                if errors:
                    continue
            else:
                text = raw.get(data.text_column)
                if text is None or (isinstance(text, str) and not text.strip()):
                    if cleaning.drop_empty:
                        file_n_empty += 1
                        if len(file_empty) < EXAMPLES_PER_STAGE:
                            file_empty.append(f"{path}:{line}")
                        continue
                    msg = f"empty text in column {data.text_column!r}"
                    file_problems.append(Problem(f"{path}:{line}", msg))
                    continue
                if not isinstance(text, str):
                    file_problems.append(
                        Problem(f"{path}:{line}", f"text must be a string, got {type(text).__name__}")
                    )
                    continue
                label = None
                if data.label_column is not None:
                    value = raw.get(data.label_column)
                    try:
                        checked = label_cache.get(value) if isinstance(value, str) else None
                    except TypeError:
                        checked = None
                    if checked is None:
                        checked = target_check(value)
                        if isinstance(value, str) and len(label_cache) < 10_000:
                            label_cache[value] = checked
                    label, err = checked
                    if err is not None:
                        file_problems.append(Problem(f"{path}:{line}", err))
                        continue
            cols["row_id"].append(f"{prefix}{name}:{line}")
            cols["split"].append(split)
            cols["text"].append(text)
            cols["label"].append(label)
            for c in extra_cols:
                cols[c].append(raw.get(c))
        col_problems = _check_columns(protocol, path, result.columns, slice_columns) if result.n_rows else []
        problems.extend(result.problems)
        if col_problems:
            problems.extend(col_problems)
            for values in cols.values():
                del values[mark:]
            continue
        problems.extend(file_problems)
        problems.dropped.update(file_problems.dropped)
        problems.dropped.update(getattr(result.problems, "dropped", {}))
        kept_out += file_kept_out
        n_empty += file_n_empty
        empty_lines += file_empty
    read_total = sum(r.n_rows for _, _, r in sources)
    stages.record("read", read_total)
    if data.keep_if:
        detail = "; ".join(f"{c} in [{', '.join(v)}]" for c, v in data.keep_if.items())
        stages.record("keep_if", read_total - kept_out, kept_out, detail)
    stages.record(
        "empty",
        read_total - kept_out - n_empty,
        n_empty,
        ", ".join(empty_lines[:5]) + (" ..." if n_empty > 5 else ""),
        [{"row_id": w, "text": "", "reason": "empty text"} for w in empty_lines[:EXAMPLES_PER_STAGE]],
    )
    n_rows = len(cols["row_id"])
    if not problems.total() and n_rows and data.label_column is not None and stratify:
        counts = Counter(cols["label"])
        if len(counts) < 2:
            problems.append(
                Problem(
                    f"data.label_column ({data.label_column})",
                    f"only one class ({next(iter(counts))!r}); a classifier needs two or more",
                )
            )
        elif data.files is not None:
            need = 3 if protocol.split.validation > 0 else 2
            for lab, n in sorted(counts.items()):
                if n < need:
                    problems.append(
                        Problem(
                            f"data.label_column ({data.label_column})",
                            f"class {lab!r} has {n} row(s); a stratified split needs >= {need}",
                        )
                    )
    if not n_rows and not problems.total():
        problems.append(Problem("data", "no rows left to train on"))
    if not problems.total():
        problems += removal_problems(stages.stages, cleaning.max_removed_fraction, stages.selected())
    if problems.total():
        raise DataValidationError(problems.listed(), "data")
    return cols, stages, hashes, sources


def _clean_and_split(
    protocol: Protocol,
    rows: dict[str, list[Any]],
    stages: _Stages,
    hashes: dict[str, str],
    token_lengths: Callable[[list[str]], list[int]] | None,
    text_hook: FrameHook | None,
    stratify: bool,
    sources: list[tuple[str | None, Path, ReadResult]],
    embedder: Embedder | None = None,
) -> PreparedData:
    cleaning = protocol.cleaning
    df = pd.DataFrame(rows)
    rows.clear()  # the frame holds the values now; the lists would only double the pointers
    df["text"] = [normalize_text(t, cleaning) for t in df["text"]]
    pii_report = None
    if text_hook is not None:
        df, pii_report = text_hook(df)
    before = len(df)
    blank = df["text"].str.len() == 0
    emptied = [{"row_id": r, "text": "", "reason": "empty after normalisation"} for r in df["row_id"][blank]]
    df = df[~blank] if cleaning.drop_empty else df
    stages.record("empty_after_normalisation", len(df), before - len(df), examples=emptied)

    # Conflicts are resolved before de-duplication, or dropping duplicates would hide them.
    keys = [dedup_key(t) for t in df["text"]]
    df = df.assign(_key=keys)
    if protocol.data.label_column is not None and stratify:
        conflicts = find_conflicts(keys, [str(x) for x in df["label"]])
        if conflicts and cleaning.conflicting_labels == "fail":
            bad = df[df["_key"].isin(conflicts)]["row_id"].tolist()
            raise DataValidationError(
                [Problem(rid, "text appears with conflicting labels") for rid in bad], "data"
            )
        before = len(df)
        clash = df[df["_key"].isin(conflicts)]
        df = df[~df["_key"].isin(conflicts)]
        stages.record(
            "conflicting_labels",
            len(df),
            before - len(df),
            f"{len(conflicts)} distinct texts",
            _conflict_examples(clash),
        )

    # Within one given split or the pooled files; across given splits it is leakage, handled below.
    group = df["split"].fillna("")
    if cleaning.drop_exact_duplicates:
        before = len(df)
        dup = pd.DataFrame({"g": group, "k": df["_key"]}).duplicated().to_numpy()
        examples = _exact_examples(df, group, dup)
        df = df[~dup]
        stages.record("exact_duplicates", len(df), before - len(df), examples=examples)
    near_sig: np.ndarray | None = None
    if cleaning.near_duplicates.enabled:
        spec = cleaning.near_duplicates
        texts_now = df["text"].tolist()
        sig = near_dup.text_signatures(texts_now, spec)
        keep, hits = near_dup.greedy_near_duplicates(
            sig, df["split"].fillna("").tolist(), lambda i: shingle_set(texts_now[i], spec), spec.threshold
        )
        row_ids = df["row_id"].tolist()
        examples = [
            {
                "kind": "near duplicate",
                "row_id": row_ids[h.row],
                "text": texts_now[h.row],
                "kept_id": row_ids[h.kept],
                "kept_text": texts_now[h.kept],
                "similarity": round(float(h.similarity), 4),
            }
            for h in hits[:EXAMPLES_PER_STAGE]
        ]
        del texts_now, row_ids
        before = len(df)
        df = df[keep]
        near_sig = near_dup.compact_rows(sig, keep)  # in place: a copy would be another n x num_perm
        del sig
        # Each kept row's signature travels with it to the leakage check, which then hashes nothing.
        df = df.assign(_sig=np.arange(len(df)))
        stages.record(
            "near_duplicates",
            len(df),
            before - len(df),
            near_duplicate_description(cleaning.near_duplicates),
            examples,
        )

    truncation: dict[str, Any] = {"max_length": protocol.model.max_length, "policy": cleaning.over_length}
    lengths = None
    if token_lengths is not None:
        lengths = np.asarray(token_lengths(list(df["text"])))
        over = lengths > protocol.model.max_length
        truncation.update(over_length=int(over.sum()), rate=float(over.mean()) if len(over) else 0.0)
        if cleaning.over_length == "fail" and over.any():
            limit = protocol.model.max_length
            raise DataValidationError(
                [
                    Problem(str(rid), f"{n} tokens, over model.max_length {limit}")
                    for rid, n in zip(df["row_id"][over], lengths[over], strict=True)
                ],
                "data: rows over the token limit",
            )
        if cleaning.over_length == "drop":
            before = len(df)
            examples = [
                {"row_id": r, "text": t, "reason": f"{int(n)} tokens"}
                for r, t, n in zip(df["row_id"][over], df["text"][over], lengths[over], strict=True)
            ]
            df, lengths = df[~over], lengths[~over]
            stages.record(
                "over_length", len(df), before - len(df), f"> {protocol.model.max_length} tokens", examples
            )
    # Words are counted with a regex rather than ``str.split().str.len()``: the split keeps a list of
    # word strings per row alive at once (1.9 GB at a million rows, the stage's peak); ``\S+`` runs
    # are the same count, as ``\s`` and ``str.isspace`` agree on every code point.
    df = df.assign(_len=lengths if lengths is not None else df["text"].str.count(r"\S+"))
    # Stop here, before splitting: a split of what little is left would fail with a less useful error.
    _guard(protocol, stages)

    splits = _assign_splits(protocol, df, stratify)
    leak_report = _leakage(protocol, splits, stages, near_sig)
    cluster_column = protocol.split.group_by or protocol.evaluate.cluster_by
    if cluster_column is not None:
        leak_report["clusters"] = straddling_clusters(
            {s: p[cluster_column].tolist() for s, p in splits.items()}, cluster_column
        )
    label_report = None
    if protocol.cleaning.label_errors is not None and protocol.data.label_column is not None:
        from tuneproof.data.label_errors import check_label_errors

        splits, label_report = check_label_errors(
            protocol.cleaning.label_errors, splits, protocol.seed, stages.record, embedder
        )
    _guard(protocol, stages)
    with_classes = protocol.data.label_column is not None and stratify
    sizes = {name: len(part) for name, part in splits.items()}
    class_counts = (
        {n: dict(Counter(str(x) for x in p["label"])) for n, p in splits.items()} if with_classes else None
    )
    size_problems, size_report = split_checks(protocol, sizes, class_counts)
    if size_problems:
        raise DataValidationError(size_problems, "data: splits too small to decide anything")

    meta_cols = list(
        dict.fromkeys(
            [
                *protocol.data.metadata_columns,
                *[s.column for s in protocol.evaluate.slices if s.by == "column"],
            ]
        )
    )
    out = {
        name: part[["row_id", "text", "label", *meta_cols]].reset_index(drop=True)
        for name, part in splits.items()
    }
    all_lengths = (
        np.concatenate([p["_len"].to_numpy() for p in splits.values()]) if len(df) else np.array([0])
    )
    if protocol.data.label_column is not None and stratify:
        label_dist = {n: dict(sorted(Counter(p["label"]).items())) for n, p in out.items()}
    else:
        label_dist = {}
    report = {
        "sources": [
            {"file": str(path), "split": split, "sha256": hashes.get(str(path)), "rows": res.n_rows}
            for split, path, res in sources
        ],
        "stages": stages.stages,
        "removed": dict(stages.removed),
        "near_duplicates": {
            "enabled": cleaning.near_duplicates.enabled,
            "method": near_duplicate_description(cleaning.near_duplicates),
            "threshold": cleaning.near_duplicates.threshold,
        },
        "truncation": truncation,
        "label_distribution": label_dist,
        "length_histogram": _histogram(all_lengths, "tokens" if lengths is not None else "words"),
        "length_stats": {
            "mean": float(np.mean(all_lengths)),
            "p50": float(np.percentile(all_lengths, 50)),
            "p90": float(np.percentile(all_lengths, 90)),
            "max": int(np.max(all_lengths)),
        },
        "leakage": leak_report,
        "splits": {n: {"rows": len(p), "sha256": split_hash(p)} for n, p in out.items()},
        "split_sizes": size_report,
        "removal_limits": cleaning.max_removed_fraction.model_dump(),
        "imbalance": imbalance_report(protocol, class_counts["train"] if class_counts else None),
        "small_classes": small_class_warnings(class_counts) if class_counts else [],
        "pii": pii_report,
    }
    if label_report is not None:
        report["label_errors"] = label_report
    return PreparedData(out, report, hashes)


def _assign_splits(protocol: Protocol, df: pd.DataFrame, stratify: bool) -> dict[str, pd.DataFrame]:
    if protocol.data.splits is not None:
        return {s: df[df["split"] == s] for s in SPLITS if s in protocol.data.splits}
    strat = protocol.split.stratify and stratify and protocol.data.label_column is not None
    labels = [str(x) for x in df["label"]] if strat else None
    try:
        groups = df[protocol.split.group_by].tolist() if protocol.split.group_by is not None else None
        idx = split_indices(
            len(df), None if groups is not None else labels, protocol.split, protocol.seed, groups
        )
    except ValueError as exc:  # scikit-learn's message for classes too small to stratify
        counts = dict(Counter(labels or []))
        raise DataValidationError(
            [Problem("split", f"cannot split {len(df)} rows after cleaning (per class: {counts}): {exc}")]
        ) from None
    parts = {s: df.iloc[i] for s, i in idx.items()}
    return {s: p for s, p in parts.items() if len(p) or s != "validation"}


def _guard(protocol: Protocol, stages: _Stages) -> None:
    problems = removal_problems(stages.stages, protocol.cleaning.max_removed_fraction, stages.selected())
    if problems:
        raise DataValidationError(problems, "data: cleaning would remove too much")


def _exact_examples(df: pd.DataFrame, group: pd.Series, dup: np.ndarray) -> list[dict[str, Any]]:
    """Removed exact duplicates beside the first row (kept) with the same key in the same group."""
    first: dict[tuple[str, str], tuple[str, str]] = {}
    out: list[dict[str, Any]] = []
    for rid, text, g, key, is_dup in zip(df["row_id"], df["text"], group, df["_key"], dup, strict=True):
        if not is_dup:
            first.setdefault((g, key), (rid, text))
        elif len(out) < EXAMPLES_PER_STAGE:
            kept_id, kept_text = first[(g, key)]
            out.append(
                {
                    "kind": "exact duplicate",
                    "row_id": rid,
                    "text": text,
                    "kept_id": kept_id,
                    "kept_text": kept_text,
                }
            )
    return out


def _conflict_examples(clash: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows dropped for conflicting labels, each beside another row with the same text."""
    out: list[dict[str, Any]] = []
    for _, part in clash.groupby("_key", sort=False):
        first = part.iloc[0]
        for _, row in part.iloc[1:].iterrows():
            out.append(
                {
                    "kind": f"label conflict ({row['label']} vs {first['label']})",
                    "row_id": row["row_id"],
                    "text": row["text"],
                    "kept_id": first["row_id"],
                    "kept_text": first["text"],
                }
            )
        if len(out) >= EXAMPLES_PER_STAGE:
            break
    return out[:EXAMPLES_PER_STAGE]


def _leakage(
    protocol: Protocol,
    splits: dict[str, pd.DataFrame],
    stages: _Stages,
    near_sig: np.ndarray | None = None,
) -> dict[str, Any]:
    spec = protocol.leakage
    if not (spec.exact or spec.near):
        return {"exact": 0, "near": 0, "action": spec.action, "removed": {}, "examples": [], "checked": False}
    res = find_leaks(
        {s: list(p["text"]) for s, p in splits.items()},
        {s: list(p["row_id"]) for s, p in splits.items()},
        spec,
        protocol.cleaning.near_duplicates,
        keys={s: p["_key"].tolist() for s, p in splits.items()},
        signature_rows=(near_sig, {s: p["_sig"].to_numpy() for s, p in splits.items()})
        if near_sig is not None
        else None,
    )
    report: dict[str, Any] = {
        "checked": True,
        "exact": res.exact,
        "near": res.near,
        "action": spec.action,
        "removed": {},
        "examples": res.examples,
    }
    if (res.exact or res.near) and spec.action == "fail":
        raise DataValidationError(
            [
                Problem(e["b"], f"{e['kind']} duplicate of {e['a']} (leak across splits)")
                for e in res.examples
            ],
            "data: leakage across splits",
        )
    if spec.action == "remove":
        # Texts only for the few rows the examples name: a row_id -> text map of every row would be
        # another million-entry dict at scale.
        texts = _example_texts(splits, res.examples)
        evaluation_rows = sum(len(p) for s, p in splits.items() if s != "train")
        for s, positions in res.leaked.items():
            if positions and s in splits:
                mask = np.ones(len(splits[s]), dtype=bool)
                mask[list(positions)] = False
                splits[s] = splits[s][mask]
                report["removed"][s] = len(positions)
        total = sum(report["removed"].values())
        stages.record(
            "leakage",
            sum(len(p) for p in splits.values()),
            total,
            f"{res.exact} exact, {res.near} near; removed from evaluation splits",
            [_leak_example(e, texts) for e in res.examples],
            base=evaluation_rows,
        )
    return report


def _example_texts(splits: dict[str, pd.DataFrame], examples: list[dict[str, str]]) -> dict[str, str]:
    """row_id -> text for the rows named in leak examples (ids there are ``split:row_id``)."""
    wanted = {e[side].split(":", 1)[1] for e in examples for side in ("a", "b")}
    out: dict[str, str] = {}
    for part in splits.values():
        hit = part["row_id"].isin(wanted)
        out.update(zip(part["row_id"][hit], part["text"][hit], strict=True))
    return out


def _leak_example(e: dict[str, str], texts: dict[str, str]) -> dict[str, Any]:
    """A leak (ids are ``split:row_id``) as a removed row beside the earlier row it repeats."""
    removed, kept = e["b"], e["a"]
    return {
        "kind": f"{e['kind']} duplicate across splits",
        "row_id": removed,
        "text": texts.get(removed.split(":", 1)[1], ""),
        "kept_id": kept,
        "kept_text": texts.get(kept.split(":", 1)[1], ""),
    }


def _histogram(lengths: np.ndarray, unit: str) -> dict[str, Any]:
    top = int(max(1, lengths.max()))
    edges = np.unique(np.linspace(0, top + 1, num=min(21, top + 2)).astype(int))
    counts, edges = np.histogram(lengths, bins=edges)
    return {"unit": unit, "edges": edges.tolist(), "counts": counts.tolist()}


def write_splits(prepared: PreparedData, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, df in prepared.splits.items():
        path = out_dir / f"{name}.parquet"
        df.to_parquet(path, index=False)
        paths[name] = path
    return paths
