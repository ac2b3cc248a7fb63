"""The data stage for images: read and check every file, de-duplicate, split, check for leakage.

It follows the text stage (``data/prepare.py``) step for step and reports in the same layout, so the
removal limits (``cleaning.max_removed_fraction``), split minimums and leakage actions mean the same
thing: exact duplicates follow ``cleaning.drop_exact_duplicates``, near duplicates
``images.near_duplicates``, label conflicts ``cleaning.conflicting_labels``, leaks ``leakage``.
The prepared splits hold each image as a PNG at the model's input size (column ``image``), so the
run folder keeps exactly the pixels the model was trained and tested on.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuneproof.data.guards import removal_problems, split_checks
from tuneproof.data.image_dedup import conflicting_labels, exact_duplicates, find_image_leaks, near_duplicates
from tuneproof.data.images import candidates, iter_decoded
from tuneproof.data.locate import resolve_location
from tuneproof.data.prepare import (
    EXAMPLES_PER_STAGE,
    PreparedData,
    TargetCheck,
    _assign_splits,
    _Stages,
    sha256_file,
)
from tuneproof.errors import DataValidationError, Problem
from tuneproof.protocol.schema import Protocol

# Bad files listed by name in the data report (all are counted; the error lists every one).
BAD_FILES_IN_REPORT = 200


def image_split_hash(df: pd.DataFrame) -> str:
    """Content hash of a prepared image split: ids, sources, labels and the decoded pixels' hashes."""
    h = hashlib.sha256()
    for rec in df[["row_id", "text", "label", "pixel_sha256"]].itertuples(index=False):
        h.update(json.dumps(list(rec), ensure_ascii=False, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()


_RESERVED = {"row_id", "split", "text", "label", "image", "pixel_sha256", "_bits", "_len"}


def near_method(protocol: Protocol) -> str:
    nd = protocol.images.near_duplicates
    return f"imagehash {nd.hash} ({nd.hash_size * nd.hash_size} bits), Hamming distance <= {nd.max_distance}"


def prepare_images(protocol: Protocol, base_dir: Path, size: int, target_check: TargetCheck) -> PreparedData:
    data, spec, cleaning = protocol.data, protocol.images, protocol.cleaning
    stages = _Stages()
    problems: list[Problem] = []
    entries: list[tuple[str | None, str, Any]] = []
    if data.files is not None:
        entries = [(None, f"data.files[{i}]", loc) for i, loc in enumerate(data.files)]
    else:
        assert data.splits is not None
        for name, locs in data.splits.items():
            entries += [(name, f"data.splits.{name}[{i}]", loc) for i, loc in enumerate(locs)]
    # Metadata columns carried from table sources to the prepared splits (slices, metadata_columns).
    extra = list(
        dict.fromkeys(
            [*data.metadata_columns, *[s.column for s in protocol.evaluate.slices if s.by == "column"]]
        )
    )
    problems += [
        Problem("data.metadata_columns", f"column {c!r} is a name the image data stage uses itself")
        for c in extra
        if c in _RESERVED
    ]
    hashes: dict[str, str] = {}
    sources: list[dict[str, Any]] = []
    cands = []
    ignored: list[str] = []
    for split, where, loc in entries:
        path, problem = resolve_location(loc, base_dir, where)
        if problem is not None:
            problems.append(problem)
            continue
        assert path is not None
        found, source_problems, skipped = candidates(
            path, split, spec, data.label_column, data.encoding, extra
        )
        problems += source_problems
        ignored += skipped
        hashes[str(path)] = sha256_file(path)
        sources.append({"file": str(path), "split": split, "sha256": hashes[str(path)], "rows": len(found)})
        cands += found

    rows: list[dict[str, Any]] = []
    bad: list[dict[str, Any]] = []
    modes: Counter[str] = Counter()
    sizes: list[tuple[int, int]] = []
    for c, img, why in iter_decoded(cands, spec, size):
        if img is None:
            bad.append({"row_id": c.row_id, "text": c.where, "reason": why})
            continue
        label, err = target_check(c.label)
        if err is not None:
            problems.append(Problem(c.where, err))
            continue
        modes[img.mode] += 1
        sizes.append((img.width, img.height))
        rows.append(
            {
                "row_id": c.row_id,
                "split": c.split,
                # The row id names the image portably (relative to its source), so a split's hash does
                # not depend on where the data folder lives; problems name the full path.
                "text": c.row_id,
                "label": label,
                "image": img.png,
                "pixel_sha256": img.pixel_sha256,
                "_bits": img.near_hash,
                **{f"_meta_{k}": v for k, v in c.meta.items()},
            }
        )
    if bad and spec.bad_files == "fail":
        problems += [Problem(b["text"], str(b["reason"])) for b in bad]
        problems.append(
            Problem(
                "images.bad_files",
                f"{len(bad)} bad image file(s); set images.bad_files: drop to "
                "drop them (counted in the data report) instead",
            )
        )
    stages.record("read", len(cands))
    stages.record("bad_images", len(cands) - len(bad), len(bad), f"{len(bad)} unusable files", bad)
    if not problems and rows:
        counts = Counter(r["label"] for r in rows)
        if len(counts) < 2:
            problems.append(
                Problem("data", f"only one class ({next(iter(counts))!r}); a classifier needs two or more")
            )
        elif data.files is not None:
            need = 3 if protocol.split.validation > 0 else 2
            problems += [
                Problem("data", f"class {lab!r} has {n} image(s); a stratified split needs >= {need}")
                for lab, n in sorted(counts.items())
                if n < need
            ]
    if not rows and not problems:
        problems.append(Problem("data", "no images left to train on"))
    if not problems:
        problems += removal_problems(stages.stages, cleaning.max_removed_fraction, stages.selected())
    if problems:
        raise DataValidationError(problems, "data")

    df = pd.DataFrame(rows).rename(columns={f"_meta_{k}": k for k in extra})
    group = df["split"].fillna("").tolist()
    conflicts = conflicting_labels(df["pixel_sha256"].tolist(), [str(x) for x in df["label"]])
    if conflicts and cleaning.conflicting_labels == "fail":
        clash = df[df["pixel_sha256"].isin(conflicts)]
        raise DataValidationError(
            [
                Problem(w, f"the same image appears with conflicting labels ({lab})")
                for w, lab in zip(clash["text"], clash["label"], strict=True)
            ],
            "data",
        )
    clash = df["pixel_sha256"].isin(conflicts).to_numpy()
    examples = [
        {
            "kind": "label conflict",
            "row_id": r,
            "text": t,
            "reason": f"label {lab!r}; the same pixels carry another label",
        }
        for r, t, lab in zip(df["row_id"][clash], df["text"][clash], df["label"][clash], strict=True)
    ]
    df = df[~clash].reset_index(drop=True)
    stages.record(
        "conflicting_labels", len(df), int(clash.sum()), f"{len(conflicts)} distinct images", examples
    )

    if cleaning.drop_exact_duplicates:
        group = df["split"].fillna("").tolist()
        res = exact_duplicates(
            df["row_id"].tolist(), group, df["pixel_sha256"].tolist(), df["text"].tolist(), EXAMPLES_PER_STAGE
        )
        before = len(df)
        df = df[res.keep].reset_index(drop=True)
        stages.record(
            "exact_duplicates", len(df), before - len(df), "SHA-256 of the decoded pixels", res.examples
        )
    nd = spec.near_duplicates
    if nd.enabled:
        group = df["split"].fillna("").tolist()
        res = near_duplicates(
            df["row_id"].tolist(),
            group,
            df["_bits"].tolist(),
            df["text"].tolist(),
            nd.max_distance,
            EXAMPLES_PER_STAGE,
        )
        before = len(df)
        df = df[res.keep].reset_index(drop=True)
        stages.record("near_duplicates", len(df), before - len(df), near_method(protocol), res.examples)
    _guard(protocol, stages)

    df = df.assign(_len=1)
    splits = {k: v.reset_index(drop=True) for k, v in _assign_splits(protocol, df, True).items()}
    leak_report = _leakage(protocol, splits, stages)
    _guard(protocol, stages)
    sizes_by_split = {name: len(part) for name, part in splits.items()}
    class_counts = {n: dict(Counter(str(x) for x in p["label"])) for n, p in splits.items()}
    size_problems, size_report = split_checks(protocol, sizes_by_split, class_counts)
    if size_problems:
        raise DataValidationError(size_problems, "data: splits too small to decide anything")
    out = {
        name: part[["row_id", "text", "label", "image", "pixel_sha256", *extra]].reset_index(drop=True)
        for name, part in splits.items()
    }
    widths = np.array([w for w, _ in sizes]) if sizes else np.array([0])
    heights = np.array([h for _, h in sizes]) if sizes else np.array([0])
    report = {
        "sources": sources,
        "stages": stages.stages,
        "removed": dict(stages.removed),
        "near_duplicates": {
            "enabled": nd.enabled,
            "method": near_method(protocol),
            "threshold": nd.max_distance,
        },
        "label_distribution": {n: dict(sorted(Counter(p["label"]).items())) for n, p in out.items()},
        "leakage": leak_report,
        "splits": {n: {"rows": len(p), "sha256": image_split_hash(p)} for n, p in out.items()},
        "split_sizes": size_report,
        "removal_limits": cleaning.max_removed_fraction.model_dump(),
        "imbalance": {"strategy": protocol.imbalance.strategy},
        "pii": None,
        "images": {
            "input_size": size,
            "modes": dict(modes),
            "width": {"min": int(widths.min()), "max": int(widths.max()), "mean": float(widths.mean())},
            "height": {"min": int(heights.min()), "max": int(heights.max()), "mean": float(heights.mean())},
            "bad_files": len(bad),
            "bad_file_list": bad[:BAD_FILES_IN_REPORT],
            "ignored_files": ignored[:BAD_FILES_IN_REPORT],
            "ignored_count": len(ignored),
            "augment": spec.augment.model_dump(),
        },
    }
    return PreparedData(out, report, hashes)


def _guard(protocol: Protocol, stages: _Stages) -> None:
    problems = removal_problems(stages.stages, protocol.cleaning.max_removed_fraction, stages.selected())
    if problems:
        raise DataValidationError(problems, "data: cleaning would remove too much")


def _leakage(protocol: Protocol, splits: dict[str, pd.DataFrame], stages: _Stages) -> dict[str, Any]:
    spec = protocol.leakage
    near = spec.near and protocol.images.near_duplicates.enabled
    if not (spec.exact or near):
        return {"exact": 0, "near": 0, "action": spec.action, "removed": {}, "examples": [], "checked": False}
    res = find_image_leaks(
        {
            s: (p["row_id"].tolist(), p["pixel_sha256"].tolist(), p["_bits"].tolist())
            for s, p in splits.items()
        },
        spec.exact,
        near,
        protocol.images.near_duplicates.max_distance,
    )
    report: dict[str, Any] = {
        "checked": True,
        "exact": res.exact,
        "near": res.near,
        "action": spec.action,
        "method": near_method(protocol),
        "removed": {},
        "examples": res.examples,
    }
    if (res.exact or res.near) and spec.action == "fail":
        raise DataValidationError(
            [
                Problem(str(e["b"]), f"{e['kind']} duplicate of {e['a']} (leak across splits)")
                for e in res.examples
            ],
            "data: leakage across splits",
        )
    if spec.action == "remove":
        texts = {rid: t for p in splits.values() for rid, t in zip(p["row_id"], p["text"], strict=True)}
        evaluation_rows = sum(len(p) for s, p in splits.items() if s != "train")
        for s, positions in res.leaked.items():
            if positions and s in splits:
                mask = np.ones(len(splits[s]), dtype=bool)
                mask[list(positions)] = False
                splits[s] = splits[s][mask].reset_index(drop=True)
                report["removed"][s] = len(positions)
        examples = [
            {
                "kind": f"{e['kind']} duplicate across splits",
                "row_id": e["b"],
                "text": texts.get(str(e["b"]).split(":", 1)[1], ""),
                "kept_id": e["a"],
                "kept_text": texts.get(str(e["a"]).split(":", 1)[1], ""),
            }
            for e in res.examples
        ]
        stages.record(
            "leakage",
            sum(len(p) for p in splits.values()),
            sum(report["removed"].values()),
            f"{res.exact} exact, {res.near} near; removed from evaluation splits",
            examples,
            base=evaluation_rows,
        )
    return report
