"""The data stage on a Dask cluster: partitions in, de-duplicated splits and the data report out.

Every step that needs rows side by side is a shuffle by a hash, so no step needs all rows in one
place: exact duplicates and label conflicts meet by the content hash of their key, near-duplicate
candidates by MinHash band key, and leaks across splits by a join on the same keys. The split is
a function of a hash of the row's unit (its ``split.group_by`` value, else its row id) and the
seed, so it does not depend on how the rows were partitioned, and a group can never straddle;
without groups, each label's rows are cut at exact per-label counts in hash order (stratified).
What reaches the client is small: counts, at most ``EXAMPLES`` examples per stage, the conflict
keys, and the confirmed near-duplicate pairs (for the greedy pass that keeps the local stage's
choice of which row of a pair survives).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuneproof.data.clean import near_duplicate_description
from tuneproof.data.cluster import near as near_mod
from tuneproof.data.cluster.partitions import (
    PartitionStats,
    extra_columns,
    frame,
    line_offsets,
    load_partition,
    plan,
    splittable_format,
)
from tuneproof.data.guards import removal_problems, split_checks
from tuneproof.data.locate import resolve_location
from tuneproof.data.prepare import SPLITS, _Stages, sha256_file
from tuneproof.data.split import straddling_clusters
from tuneproof.errors import DataValidationError, Problem
from tuneproof.protocol.schema import Protocol
from tuneproof.train.imbalance_auto import imbalance_report, small_class_warnings

EXAMPLES = 20


def _sources(protocol: Protocol, base_dir: Path) -> list[tuple[str | None, Path]]:
    data = protocol.data
    entries: list[tuple[str | None, str, Any]] = []
    split: str | None
    if data.files is not None:
        entries = [(None, f"data.files[{i}]", loc) for i, loc in enumerate(data.files)]
    else:
        assert data.splits is not None
        for split, locs in data.splits.items():
            entries += [(split, f"data.splits.{split}[{i}]", loc) for i, loc in enumerate(locs)]
    problems: list[Problem] = []
    out: list[tuple[str | None, Path]] = []
    for split, where, loc in entries:
        path, problem = resolve_location(loc, base_dir, where)
        if problem is not None:
            problems.append(problem)
        else:
            assert path is not None
            out.append((split, path))
    if problems:
        raise DataValidationError(problems, "data")
    return out


def _unit_hash(values: pd.Series, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per unit, from the seed and the unit's text alone."""
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        d = hashlib.blake2b(f"{seed}\0{v}".encode(), digest_size=8).digest()
        out[i] = int.from_bytes(d, "big") / 2.0**64
    return out


def _assign(part: pd.DataFrame, protocol: Protocol) -> pd.DataFrame:
    spec = protocol.split
    if protocol.data.splits is not None:
        return part
    col = spec.group_by
    if col is None:
        units = part["row_id"]
    else:
        # A row without a group value is a group of its own, as cluster_codes treats it locally.
        units = part[col].where(part[col].notna(), "\0row" + part["row_id"]).astype(str)
    u = _unit_hash(units, protocol.seed)
    edges = np.array([spec.train, spec.train + spec.validation])
    names = np.array(["train", "validation", "test"], dtype=object)
    return part.assign(split=names[np.searchsorted(edges, u, side="right")])


STRAT_BUCKETS = 1 << 16


def stratified_counts(n: int, validation: float, test: float) -> tuple[int, int]:
    """(train, validation) rows of a class of ``n``, as scikit-learn's two-step stratified
    ``train_test_split`` rounds a single class: the held-out parts get the ceiling."""
    rest = validation + test
    n_rest = math.ceil(n * rest - 1e-9) if rest > 0 else 0
    n_test = math.ceil(n_rest * test / rest - 1e-9) if rest > 0 else 0
    return n - n_rest, n_rest - n_test


def _with_unit(part: pd.DataFrame, seed: int) -> pd.DataFrame:
    u = _unit_hash(part["row_id"], seed)
    return part.assign(_u=u, _b=np.minimum((u * STRAT_BUCKETS).astype(np.int64), STRAT_BUCKETS - 1))


def _label_buckets(part: pd.DataFrame) -> pd.DataFrame:
    frame_ = pd.DataFrame({"label": part["label"].astype(str), "_b": part["_b"]})
    out = frame_.groupby(["label", "_b"]).size().reset_index(name="n")
    return out.astype({"label": "object", "_b": "int64", "n": "int64"})


def _assign_stratified(part: pd.DataFrame, thresholds: dict[str, list[float]]) -> pd.DataFrame:
    labels = part["label"].astype(str)
    t1 = labels.map(lambda lab: thresholds[lab][0]).to_numpy(dtype=np.float64)
    t2 = labels.map(lambda lab: thresholds[lab][1]).to_numpy(dtype=np.float64)
    u = part["_u"].to_numpy()
    names = np.where(u < t1, "train", np.where(u < t2, "validation", "test")).astype(object)
    return part.drop(columns=["_u", "_b"]).assign(split=names)


def _dedup_exact(part: pd.DataFrame) -> pd.DataFrame:
    """After a shuffle by content hash: mark every row but the first (in input order) of its key
    and split group, naming the first as ``_kept``."""
    part = part.sort_values("_order")
    first = part.groupby(["split", "_h"], sort=False)["row_id"].transform("first")
    dup = part.duplicated(["split", "_h"])
    return part.assign(_kept=first.where(dup, ""))


def _conflicts(part: pd.DataFrame) -> pd.DataFrame:
    labels = part.groupby(["_h"])["label"].nunique()
    return pd.DataFrame({"_h": labels.index[labels.to_numpy() > 1].astype("int64")})


class ClusterStage(_Stages):
    """One run of the cluster data stage on a ``distributed.Client``."""

    def __init__(self, protocol: Protocol, base_dir: Path, client: Any, stratify: bool = True) -> None:
        # The local stage's log of stages, so guards.removal_problems reads both the same way.
        super().__init__()
        self.protocol = protocol
        self.base_dir = base_dir
        self.client = client
        self.stratify = stratify  # the task's choice, as prepare_data's ``stratify``

    def _guard(self) -> None:
        problems = removal_problems(self.stages, self.protocol.cleaning.max_removed_fraction, self.selected())
        if problems:
            raise DataValidationError(problems, "data: cleaning would remove too much")

    # -- read and validate ------------------------------------------------------------------
    def read(self) -> tuple[Any, list[tuple[str | None, Path]]]:
        import dask.dataframe as dd

        protocol, client = self.protocol, self.client
        files = _sources(protocol, self.base_dir)
        every = protocol.data.engine.partition_rows
        offset_futures = [
            client.submit(line_offsets, str(p), every, pure=False)
            if splittable_format(protocol, p) == "jsonl"
            else None
            for _, p in files
        ]
        offsets = [f.result() if f is not None else [] for f in offset_futures]
        self.hashes = dict(
            zip(
                [str(p) for _, p in files],
                client.gather(client.map(sha256_file, [p for _, p in files])),
                strict=True,
            )
        )
        specs = plan(protocol, files, offsets)
        loaded = client.map(load_partition, [protocol] * len(specs), specs, pure=False)
        frames = client.map(lambda r: r[0], loaded)
        stats: list[PartitionStats] = client.gather(client.map(lambda r: r[1], loaded))
        del loaded
        self._validate(files, specs, stats)
        ddf = dd.from_delayed(frames, meta=frame([], extra_columns(protocol)), verify_meta=False)
        self.source_rows: Counter[str] = Counter()
        for s, st in zip(specs, stats, strict=True):
            self.source_rows[s.path] += st.read
        return ddf, files

    def _validate(
        self, files: list[tuple[str | None, Path]], specs: list[Any], stats: list[PartitionStats]
    ) -> None:
        protocol, data = self.protocol, self.protocol.data
        wanted = {"data.text_column": data.text_column}
        if data.label_column is not None:
            wanted["data.label_column"] = data.label_column
        for col in data.keep_if:
            wanted[f"data.keep_if.{col}"] = col
        for i, col in enumerate(extra_columns(protocol)):
            wanted[f"data.metadata_columns/evaluate.slices[{i}]"] = col
        by_file: dict[str, tuple[set[str], int]] = {}
        for s, st in zip(specs, stats, strict=True):
            cols, n = by_file.get(s.path, (set(), 0))
            by_file[s.path] = (cols | set(st.columns), n + st.read)
        problems: list[Problem] = []
        bad_files = set()
        for path, (cols, n) in by_file.items():
            missing = [
                Problem(path, f"column {c!r} (from {k}) not found; columns are: {', '.join(sorted(cols))}")
                for k, c in wanted.items()
                if c not in cols
            ]
            if n and missing:
                problems += missing
                bad_files.add(path)
        uncounted = 0
        for s, st in zip(specs, stats, strict=True):
            if s.path in bad_files:
                continue
            problems += st.problems
            uncounted += st.problem_count - len(st.problems)
        if uncounted:
            problems.append(
                Problem(
                    "data", f"{uncounted} more problem(s) not listed (each partition lists its first few)"
                )
            )
        read_total = sum(st.read for st in stats)
        kept_out = sum(st.kept_out for st in stats)
        empty = sum(st.empty_count for st in stats)
        self.record("read", read_total)
        if data.keep_if:
            detail = "; ".join(f"{c} in [{', '.join(v)}]" for c, v in data.keep_if.items())
            self.record("keep_if", read_total - kept_out, kept_out, detail)
        lines = [w for st in stats for w in st.empty]
        self.record(
            "empty",
            read_total - kept_out - empty,
            empty,
            ", ".join(lines[:5]) + (" ..." if empty > 5 else ""),
            [{"row_id": w, "text": "", "reason": "empty text"} for w in lines[:EXAMPLES]],
        )
        emptied = sum(st.emptied_count for st in stats)
        ids = [r for st in stats for r in st.emptied]
        self.record(
            "empty_after_normalisation",
            read_total - kept_out - empty - emptied,
            emptied,
            examples=[
                {"row_id": r, "text": "", "reason": "empty after normalisation"} for r in ids[:EXAMPLES]
            ],
        )
        if not problems and read_total - kept_out - empty - emptied == 0:
            problems.append(Problem("data", "no rows left to train on"))
        if not problems:
            problems += removal_problems(self.stages, protocol.cleaning.max_removed_fraction, self.selected())
        if problems:
            raise DataValidationError(problems, "data")

    # -- clean ----------------------------------------------------------------------------------
    def clean(self, ddf: Any) -> Any:
        protocol, cleaning = self.protocol, self.protocol.cleaning
        rows = self.stages[-1]["rows"]
        if protocol.data.label_column is not None:
            by_key = ddf[["_h", "label"]].shuffle(on="_h")
            keys = set(by_key.map_partitions(_conflicts, meta={"_h": "int64"}).compute()["_h"].tolist())
            # The rows of the first few conflicting keys, for the error or the report's examples.
            clash = ddf[ddf["_h"].isin(sorted(keys)[:EXAMPLES])].compute().sort_values("_order")
            if keys and cleaning.conflicting_labels == "fail":
                raise DataValidationError(
                    [Problem(rid, "text appears with conflicting labels") for rid in clash["row_id"]], "data"
                )
            examples: list[dict[str, Any]] = []
            removed = 0
            if keys:
                removed = int(ddf["_h"].isin(list(keys)).sum().compute())
                ddf = ddf[~ddf["_h"].isin(list(keys))]
                for _, part in clash.groupby("_h", sort=False):
                    f = part.iloc[0]
                    for _, r in part.iloc[1:].iterrows():
                        examples.append(
                            {
                                "kind": f"label conflict ({r['label']} vs {f['label']})",
                                "row_id": r["row_id"],
                                "text": r["text"],
                                "kept_id": f["row_id"],
                                "kept_text": f["text"],
                            }
                        )
            rows -= removed
            self.record("conflicting_labels", rows, removed, f"{len(keys)} distinct texts", examples)
        ddf = ddf.persist()
        if cleaning.drop_exact_duplicates:
            marked = (
                ddf.shuffle(on="_h")
                .map_partitions(_dedup_exact, meta={**ddf.dtypes.to_dict(), "_kept": "object"})
                .persist()
            )
            dups = marked[marked["_kept"] != ""]
            removed = int(dups.shape[0].compute())
            # The first removed rows in input order, as the local report lists them.
            sample = dups.nsmallest(EXAMPLES, "_order").compute().sort_values("_order")
            texts = self._texts(marked, set(sample["_kept"]))
            examples = [
                {
                    "kind": "exact duplicate",
                    "row_id": r,
                    "text": t,
                    "kept_id": k,
                    "kept_text": texts.get(k, ""),
                }
                for r, t, k in zip(sample["row_id"], sample["text"], sample["_kept"], strict=True)
            ]
            ddf = marked[marked["_kept"] == ""].drop(columns="_kept").persist()
            rows -= removed
            self.record("exact_duplicates", rows, removed, examples=examples)
        if cleaning.near_duplicates.enabled:
            ddf, rows = self._near(ddf, rows)
        self._guard()
        return ddf

    def _texts(self, ddf: Any, ids: set[str]) -> dict[str, str]:
        if not ids:
            return {}
        got = ddf[ddf["row_id"].isin(list(ids))][["row_id", "text"]].compute()
        return dict(zip(got["row_id"], got["text"], strict=True))

    def _bands(self, ddf: Any) -> Any:
        spec = self.protocol.cleaning.near_duplicates
        meta = {"band": "int64", "_order": "int64", "row_id": "object", "split": "object", "text": "object"}
        return ddf.map_partitions(near_mod.band_rows, spec, "split", meta=meta)

    def _pairs(self, bands: Any, allowed: list[tuple[str, str]] | None) -> pd.DataFrame:
        spec = self.protocol.cleaning.near_duplicates
        meta = dict.fromkeys(near_mod.PAIR_COLUMNS, "object") | {
            "a": "int64",
            "b": "int64",
            "similarity": "float64",
        }
        pairs = bands.shuffle(on="band").map_partitions(
            near_mod.bucket_pairs, spec, "split", allowed, meta=meta
        )
        return pairs.compute().drop_duplicates(["a", "b"])

    def _near(self, ddf: Any, rows: int) -> tuple[Any, int]:
        pairs = self._pairs(self._bands(ddf), None)
        dropped = near_mod.greedy_drops(pairs)
        ids = dict(zip(pairs["b"], pairs["b_id"], strict=True))
        first = sorted(dropped)[:EXAMPLES]
        texts = self._texts(ddf, {dropped[o][1] for o in first} | {ids[o] for o in first})
        examples = [
            {
                "kind": "near duplicate",
                "row_id": ids[o],
                "text": texts.get(ids[o], ""),
                "kept_id": dropped[o][1],
                "kept_text": texts.get(dropped[o][1], ""),
                "similarity": round(dropped[o][2], 4),
            }
            for o in first
        ]
        ddf = ddf[~ddf["_order"].isin(list(dropped))].persist()
        rows -= len(dropped)
        spec = self.protocol.cleaning.near_duplicates
        self.record("near_duplicates", rows, len(dropped), near_duplicate_description(spec), examples)
        return ddf, rows

    # -- split and leakage ------------------------------------------------------------------------
    def split(self, ddf: Any) -> Any:
        protocol = self.protocol
        stratified = (
            self.stratify
            and protocol.split.stratify
            and protocol.split.group_by is None
            and protocol.data.splits is None
            and protocol.data.label_column is not None
        )
        if not stratified:
            return ddf.map_partitions(_assign, protocol, meta=ddf._meta).persist()
        return self._stratified_split(ddf)

    def _stratified_split(self, ddf: Any) -> Any:
        """Each label's rows cut at exact per-label counts, in the order of their unit hashes.

        The local stage stratifies with scikit-learn, which needs every row in one place; here the
        cut points are found in two small passes instead: a histogram of each label's hashes in
        ``STRAT_BUCKETS`` buckets, then the hashes of just the buckets a cut falls in. The result is
        still a function of the row ids, the labels and the seed alone, whatever the partitioning.
        """
        seed = self.protocol.seed
        with_u = ddf.map_partitions(
            _with_unit, seed, meta={**ddf.dtypes.to_dict(), "_u": "float64", "_b": "int64"}
        )
        with_u = with_u.persist()
        hist = with_u.map_partitions(_label_buckets, meta={"label": "object", "_b": "int64", "n": "int64"})
        counts = hist.compute().groupby(["label", "_b"])["n"].sum()
        per_label: dict[str, pd.Series] = {
            str(k): v.droplevel(0).sort_index() for k, v in counts.groupby(level=0)
        }
        totals = {lab: int(v.sum()) for lab, v in per_label.items()}
        small = {lab: n for lab, n in totals.items() if n < 2}
        if small:
            raise DataValidationError(
                [
                    Problem(
                        "split",
                        f"cannot split {sum(totals.values())} rows after cleaning (per class: {totals}): "
                        f"a stratified split needs at least 2 rows of each class ({sorted(small)})",
                    )
                ]
            )
        spec = self.protocol.split
        cuts = {lab: stratified_counts(n, spec.validation, spec.test) for lab, n in totals.items()}
        # (label, bucket, rank within the bucket) of the first row after each cut
        wanted: dict[tuple[str, int], list[tuple[int, int]]] = {}
        for lab, (k_train, k_val) in cuts.items():
            cum = per_label[lab].cumsum()
            for i, r in enumerate((k_train, k_train + k_val)):
                if r >= totals[lab]:
                    continue
                pos = int(np.searchsorted(cum.to_numpy(), r, side="right"))
                bucket = int(cum.index[pos])
                before = int(cum.iloc[pos - 1]) if pos else 0
                wanted.setdefault((lab, bucket), []).append((i, r - before))
        sel = with_u[with_u["_b"].isin(sorted({b for _, b in wanted}))][["label", "_b", "_u"]].compute()
        thresholds = {lab: [2.0, 2.0] for lab in totals}  # no cut: every u in [0, 1) is below
        for (lab, bucket), ranks in wanted.items():
            us = np.sort(sel.loc[(sel["label"].astype(str) == lab) & (sel["_b"] == bucket), "_u"].to_numpy())
            for i, rank in ranks:
                thresholds[lab][i] = float(us[rank])
        meta = ddf._meta
        return with_u.map_partitions(_assign_stratified, thresholds, meta=meta).persist()

    def leakage(self, ddf: Any) -> tuple[Any, dict[str, Any]]:
        spec = self.protocol.leakage
        if not (spec.exact or spec.near):
            return ddf, {
                "exact": 0,
                "near": 0,
                "action": spec.action,
                "removed": {},
                "examples": [],
                "checked": False,
            }
        leaked: dict[int, tuple[str, str, str, str]] = {}  # order -> (split, kind, other id, row id)
        for target, earlier in (("validation", ["train"]), ("test", ["train", "validation"])):
            pool = ddf[~ddf["_order"].isin(list(leaked))] if leaked else ddf
            found: dict[int, tuple[str, str, str, str]] = {}
            if spec.exact:
                left = pool[pool["split"] == target][["_order", "row_id", "_h"]]
                right = pool[pool["split"].isin(earlier)][["_h", "row_id", "_order", "split"]]
                right = right.rename(columns={"row_id": "other", "_order": "o2", "split": "s2"})
                joined = left.merge(right, on="_h", how="inner").compute().sort_values(["_order", "o2"])
                for o, rid, other, s2 in zip(
                    joined["_order"], joined["row_id"], joined["other"], joined["s2"], strict=True
                ):
                    found.setdefault(int(o), (target, "exact", f"{s2}:{other}", rid))
            if spec.near:
                sub = pool[pool["split"].isin([*earlier, target])]
                pairs = self._pairs(self._bands(sub), [(e, target) for e in earlier])
                # The local check names the first hit; here the earliest row in the input.
                for b, bid, _a, aid, sa in sorted(
                    zip(pairs["b"], pairs["b_id"], pairs["a"], pairs["a_id"], pairs["a_split"], strict=True)
                ):
                    if int(b) not in found:
                        found[int(b)] = (target, "near", f"{sa}:{aid}", bid)
            leaked.update(found)
        exact = sum(1 for v in leaked.values() if v[1] == "exact")
        examples = [
            {"kind": k, "a": other, "b": f"{s}:{rid}"}
            for _, (s, k, other, rid) in sorted(leaked.items())[:EXAMPLES]
        ]
        report: dict[str, Any] = {
            "checked": True,
            "exact": exact,
            "near": len(leaked) - exact,
            "action": spec.action,
            "removed": {},
            "examples": examples,
        }
        if leaked and spec.action == "fail":
            raise DataValidationError(
                [
                    Problem(e["b"], f"{e['kind']} duplicate of {e['a']} (leak across splits)")
                    for e in examples
                ],
                "data: leakage across splits",
            )
        if spec.action == "remove":
            evaluation = int((ddf["split"] != "train").sum().compute())
            ddf = ddf[~ddf["_order"].isin(list(leaked))].persist()
            report["removed"] = dict(Counter(v[0] for v in leaked.values()))
            total = sum(report["removed"].values())
            self.record(
                "leakage",
                self.stages[-1]["rows"] - total,
                total,
                f"{exact} exact, {len(leaked) - exact} near; removed from evaluation splits",
                [
                    {"kind": f"{e['kind']} duplicate across splits", "row_id": e["b"], "kept_id": e["a"]}
                    for e in examples
                ],
                base=evaluation,
            )
        return ddf, report

    # -- report and output ------------------------------------------------------------------------
    def finish(
        self, ddf: Any, files: list[tuple[str | None, Path]], leak_report: dict[str, Any], out_dir: Path
    ) -> dict[str, Any]:
        import dask

        protocol = self.protocol
        with_classes = protocol.data.label_column is not None
        present = [
            s
            for s in SPLITS
            if s != "validation" or protocol.split.validation > 0 or protocol.data.splits is not None
        ]
        sizes_s, labels_s, lengths_s, digests = dask.compute(
            ddf["split"].value_counts(),
            ddf.groupby(["split", "label"])["_order"].count()
            if with_classes
            else ddf["split"].value_counts(),
            ddf["_len"].value_counts(),
            ddf.map_partitions(_digests, meta={"split": "object", "sum": "object", "rows": "int64"}),
        )
        sizes = {s: int(sizes_s.get(s, 0)) for s in present if s in sizes_s.index or s != "validation"}
        class_counts: dict[str, dict[str, int]] | None = None
        if with_classes:
            class_counts = {s: {} for s in sizes}
            for (s, lab), n in labels_s.items():
                if s in class_counts:
                    class_counts[s][str(lab)] = int(n)
        cluster_column = protocol.split.group_by or protocol.evaluate.cluster_by
        if cluster_column is not None:
            uniq = ddf[["split", cluster_column]].drop_duplicates().compute()
            leak_report["clusters"] = straddling_clusters(
                {s: uniq[uniq["split"] == s][cluster_column].tolist() for s in sizes}, cluster_column
            )
        self._guard()
        size_problems, size_report = split_checks(protocol, sizes, class_counts)
        if size_problems:
            raise DataValidationError(size_problems, "data: splits too small to decide anything")
        keep = ["row_id", "text", "label", *extra_columns(protocol)]
        out_dir.mkdir(parents=True, exist_ok=True)
        for s in sizes:
            part = ddf[ddf["split"] == s][keep]
            part.to_parquet(str(out_dir / s), write_index=False, overwrite=True)
        counts = {int(k): int(v) for k, v in lengths_s.items()}
        report = {
            "engine": {
                "kind": "dask",
                "scheduler": self.client.scheduler.address,
                "workers": len(self.client.scheduler_info()["workers"]),
            },
            "sources": [
                {"file": str(p), "split": s, "sha256": self.hashes[str(p)], "rows": self.source_rows[str(p)]}
                for s, p in files
            ],
            "stages": self.stages,
            "removed": dict(self.removed),
            "near_duplicates": {
                "enabled": protocol.cleaning.near_duplicates.enabled,
                "method": near_duplicate_description(protocol.cleaning.near_duplicates),
                "threshold": protocol.cleaning.near_duplicates.threshold,
            },
            "truncation": {
                "max_length": protocol.model.max_length,
                "policy": protocol.cleaning.over_length,
                "measured": False,
            },
            "label_distribution": {s: dict(sorted(c.items())) for s, c in class_counts.items()}
            if class_counts
            else {},
            "length_histogram": _histogram(counts),
            "length_stats": _length_stats(counts),
            "leakage": leak_report,
            "splits": {s: {"rows": sizes[s], "content_sha256": _combine(digests, s)} for s in sizes},
            "split_sizes": size_report,
            "removal_limits": protocol.cleaning.max_removed_fraction.model_dump(),
            "imbalance": imbalance_report(protocol, class_counts["train"] if class_counts else None),
            "small_classes": small_class_warnings(class_counts) if class_counts else [],
            "pii": None,
        }
        (out_dir / "data_report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        return report


def _digests(part: pd.DataFrame) -> pd.DataFrame:
    """Per split, the sum modulo 2**256 of each row's SHA-256 (of row_id, text, label as JSON):
    a content hash of the split as a set of rows, whatever the partitioning and row order."""
    out = []
    for s, rows in part.groupby("split"):
        total = 0
        for rec in rows[["row_id", "text", "label"]].itertuples(index=False):
            total += int.from_bytes(
                hashlib.sha256(json.dumps(list(rec), ensure_ascii=False, default=str).encode()).digest(),
                "big",
            )
        out.append((s, str(total % 2**256), len(rows)))
    return pd.DataFrame(out, columns=["split", "sum", "rows"])


def _combine(digests: pd.DataFrame, split: str) -> str:
    total = sum(int(x) for x in digests[digests["split"] == split]["sum"]) % 2**256
    return f"{total:064x}"


def _histogram(counts: dict[int, int]) -> dict[str, Any]:
    # prepare._histogram's edges, from value counts instead of one array of every row's length.
    top = int(max(1, max(counts, default=0)))
    edges = np.unique(np.linspace(0, top + 1, num=min(21, top + 2)).astype(int))
    values = np.array(list(counts), dtype=np.int64)
    weights = np.array(list(counts.values()), dtype=np.int64)
    hist, edges = np.histogram(values, bins=edges, weights=weights)
    return {"unit": "words", "edges": edges.tolist(), "counts": [int(c) for c in hist]}


def _length_stats(counts: dict[int, int]) -> dict[str, float | int]:
    values = np.array(sorted(counts), dtype=np.float64)
    weights = np.array([counts[int(v)] for v in values], dtype=np.float64)
    cum = np.cumsum(weights)
    n = cum[-1]

    def pct(q: float) -> float:
        # numpy's default (linear) percentile over the expanded lengths, from their counts.
        pos = q / 100.0 * (n - 1)
        lo, hi = int(np.floor(pos)), int(np.ceil(pos))
        vlo = values[np.searchsorted(cum, lo + 1)]
        vhi = values[np.searchsorted(cum, hi + 1)]
        return float(vlo + (vhi - vlo) * (pos - lo))

    return {
        "mean": float((values * weights).sum() / n),
        "p50": pct(50),
        "p90": pct(90),
        "max": int(values.max()),
    }


def prepare_on_cluster(
    protocol: Protocol, base_dir: Path, out_dir: Path, client: Any, stratify: bool = True
) -> dict[str, Any]:
    """Run the whole stage on ``client``; writes ``out_dir/<split>/*.parquet`` and ``data_report.json``.

    ``stratify``: split each label in proportion (the task's choice, as for the local stage) where
    the protocol has no ``split.group_by``; with groups, the fractions are of the groups."""
    stage = ClusterStage(protocol, base_dir, client, stratify)
    ddf, files = stage.read()
    ddf = stage.clean(ddf)
    ddf = stage.split(ddf)
    ddf, leak_report = stage.leakage(ddf)
    return stage.finish(ddf, files, leak_report, out_dir)
