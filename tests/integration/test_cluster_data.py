"""The data stage on a 2-worker Dask LocalCluster (127.0.0.1) against the local stage on one protocol.

The data has exact duplicates (case and spacing), near duplicates (one word changed), label
conflicts, empty texts and groups (``author``); two JSONL files are cut into 150-line partitions
(two per file).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tuneproof.data.clean import dedup_key
from tuneproof.data.prepare import prepare_data
from tuneproof.data.split import find_leaks
from tuneproof.errors import DataValidationError
from tuneproof.protocol import parse_protocol
from tuneproof.protocol.schema import Protocol

pytestmark = pytest.mark.integration

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar".split()


def _rows(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(10, 24))]
        label = "pos" if i % 2 else "neg"
        out.append({"text": " ".join(words) + f" n{i}", "label": label, "author": f"a{rng.randrange(40)}"})
        r = rng.random()
        if r < 0.08:  # exact duplicate: other case and spacing, same label, another author
            out.append(
                {"text": "  " + out[-1]["text"].upper(), "label": label, "author": f"a{rng.randrange(40)}"}
            )
        elif r < 0.14:  # near duplicate: one word of a long text changed
            w = out[-1]["text"].split()
            w[rng.randrange(len(w) - 1)] = rng.choice(WORDS)
            out.append({"text": " ".join(w) + " x", "label": label, "author": f"a{rng.randrange(40)}"})
        elif r < 0.16:  # conflicting labels
            out.append({"text": out[-1]["text"], "label": "neg" if label == "pos" else "pos", "author": "a1"})
        elif r < 0.18:
            out.append({"text": "   ", "label": label, "author": "a2"})
    return out


def _protocol(tmp: Path, group_by: bool = True) -> Protocol:
    rows = _rows(520, seed=3)
    half = len(rows) // 2
    for name, part in (("a.jsonl", rows[:half]), ("b.jsonl", rows[half:])):
        (tmp / name).write_text("".join(json.dumps(r) + "\n" for r in part))
    split = "\n  group_by: author" if group_by else ""
    return parse_protocol(
        f"""
name: cluster
seed: 5
model: {{source: none, max_length: 64}}
data:
  files: [a.jsonl, b.jsonl]
  labels: [neg, pos]
  metadata_columns: [author]
  engine: {{kind: dask, workers: 2, partition_rows: 150}}
cleaning:
  near_duplicates: {{threshold: 0.8}}
split:
  min_train_rows: 10{split}
"""
    )


@pytest.fixture(scope="module")
def client() -> Any:
    from tuneproof.data.cluster.engine import dask_client
    from tuneproof.protocol.schema import DataEngineSpec

    with dask_client(DataEngineSpec(kind="dask", workers=2)) as c:
        assert len(c.scheduler_info()["workers"]) == 2
        assert c.scheduler.address.startswith("tcp://127.0.0.1:")
        yield c


def _stage(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in report["stages"] if s["stage"] == name)


def test_cluster_stage_matches_the_local_one(tmp_path: Path, client: Any) -> None:
    from tuneproof.data.cluster.stage import prepare_on_cluster

    protocol = _protocol(tmp_path)
    report = prepare_on_cluster(protocol, tmp_path, tmp_path / "out", client)
    local = prepare_data(protocol, tmp_path, stratify=True)
    # Cleaning is a function of the rows alone: the same rows go at every stage, whatever the partitions.
    for stage in (
        "read",
        "empty",
        "empty_after_normalisation",
        "conflicting_labels",
        "exact_duplicates",
        "near_duplicates",
    ):
        assert _stage(report, stage)["rows"] == _stage(local.report, stage)["rows"], stage
        assert _stage(report, stage)["removed"] == _stage(local.report, stage)["removed"], stage
    assert _stage(report, "exact_duplicates")["removed"] > 10
    assert _stage(report, "near_duplicates")["removed"] > 5
    assert _stage(report, "conflicting_labels")["removed"] > 0
    for stage in ("exact_duplicates", "near_duplicates"):
        # The same first removed rows, beside the same kept rows.
        pairs = [(e["row_id"], e["kept_id"]) for e in _stage(report, stage)["examples"]]
        assert pairs == [(e["row_id"], e["kept_id"]) for e in _stage(local.report, stage)["examples"]], stage

    splits = {s: pd.read_parquet(tmp_path / "out" / s) for s in ("train", "validation", "test")}
    kept_local = set(pd.concat(local.splits.values())["row_id"])
    kept = set(pd.concat(splits.values())["row_id"])
    assert kept == kept_local  # the same rows survive cleaning and the leakage check
    # The split differs (a hash of the group, not scikit-learn's shuffle) but not its guarantees:
    authors = {s: set(p["author"]) for s, p in splits.items()}
    assert not authors["train"] & authors["test"] and not authors["train"] & authors["validation"]
    assert not authors["validation"] & authors["test"]
    assert report["leakage"]["clusters"]["straddling"] == 0
    leaks = find_leaks(
        {s: list(p["text"]) for s, p in splits.items()},
        {s: list(p["row_id"]) for s, p in splits.items()},
        protocol.leakage,
        protocol.cleaning.near_duplicates,
    )
    assert (leaks.exact, leaks.near) == (0, 0)
    keys = {s: {dedup_key(t) for t in p["text"]} for s, p in splits.items()}
    assert not keys["train"] & keys["test"]
    # Fractions are of the groups (40 authors), as GroupShuffleSplit's are.
    assert sum(report["splits"][s]["rows"] for s in splits) == len(kept)
    assert report["splits"]["train"]["rows"] > report["splits"]["test"]["rows"]
    assert report["label_distribution"]["train"] == dict(
        sorted(splits["train"]["label"].value_counts().items())
    )
    assert report["length_stats"]["max"] == max(len(t.split()) for p in splits.values() for t in p["text"])
    on_disk = json.loads((tmp_path / "out" / "data_report.json").read_text())
    assert on_disk["engine"]["workers"] == 2


def test_split_does_not_depend_on_the_partitioning(tmp_path: Path, client: Any) -> None:
    from tuneproof.data.cluster.stage import prepare_on_cluster

    protocol = _protocol(tmp_path, group_by=False)
    # One partition per file, against two per file: the same rows in the same splits.
    engine = protocol.data.engine.model_copy(update={"partition_rows": 1000})
    coarse = protocol.model_copy(update={"data": protocol.data.model_copy(update={"engine": engine})})
    a = prepare_on_cluster(coarse, tmp_path, tmp_path / "a", client)
    b = prepare_on_cluster(protocol, tmp_path, tmp_path / "b", client)
    local = prepare_data(protocol, tmp_path, stratify=True)
    parts = {s: pd.read_parquet(tmp_path / "a" / s) for s in a["splits"]}
    kept = set(pd.concat(parts.values())["row_id"])
    assert kept == set(pd.concat(local.splits.values())["row_id"])
    for s in a["splits"]:
        assert set(parts[s]["row_id"]) == set(pd.read_parquet(tmp_path / "b" / s)["row_id"]), s
    assert a["splits"] == b["splits"]


def test_split_without_groups_is_stratified_at_exact_per_label_counts(tmp_path: Path, client: Any) -> None:
    from tuneproof.data.cluster.stage import _unit_hash, prepare_on_cluster, stratified_counts

    protocol = _protocol(tmp_path, group_by=False)
    report = prepare_on_cluster(protocol, tmp_path, tmp_path / "out", client)
    local = prepare_data(protocol, tmp_path, stratify=True)
    parts = {s: pd.read_parquet(tmp_path / "out" / s) for s in report["splits"]}
    # Cleaning removed every duplicate before the split, so the leakage check finds nothing to
    # remove here and the per-label counts are exactly the split's.
    assert sum(report["leakage"]["removed"].values()) == 0
    spec = protocol.split
    for label in ("neg", "pos"):
        sizes = [int((parts[s]["label"] == label).sum()) for s in ("train", "validation", "test")]
        k_train, k_val = stratified_counts(sum(sizes), spec.validation, spec.test)
        assert sizes == [k_train, k_val, sum(sizes) - k_train - k_val], (label, sizes)
        train = parts["train"][parts["train"]["label"] == label]
        # ... within one row of scikit-learn's stratified split of the same rows (the local stage)
        local_train = int((local.splits["train"]["label"] == label).sum())
        assert abs(len(train) - local_train) <= 1, (label, len(train), local_train)
        # ... and cut in the order of the row ids' hashes: every train row's hash is below every
        # held-out row's of the same label.
        u_train = _unit_hash(train["row_id"], protocol.seed)
        u_rest = np.concatenate(
            [
                _unit_hash(p[p["label"] == label]["row_id"], protocol.seed)
                for s, p in parts.items()
                if s != "train"
            ]
        )
        assert u_train.max() < u_rest.min()
    assert report["label_distribution"]["train"] == dict(
        sorted(parts["train"]["label"].value_counts().items())
    )


def test_stratified_counts_round_the_held_out_parts_up() -> None:
    from tuneproof.data.cluster.stage import stratified_counts

    assert stratified_counts(10, 0.1, 0.1) == (8, 1)
    assert stratified_counts(7, 0.1, 0.1) == (5, 1)  # rest ceil(1.4) = 2, test ceil(1.0) = 1
    assert stratified_counts(100, 0.0, 0.2) == (80, 0)
    assert stratified_counts(3, 0.1, 0.1) == (2, 0)


def test_a_class_of_one_row_cannot_be_stratified(tmp_path: Path, client: Any) -> None:
    from tuneproof.data.cluster.stage import prepare_on_cluster

    protocol = _protocol(tmp_path, group_by=False)
    with (tmp_path / "a.jsonl").open("a") as fh:
        fh.write(
            json.dumps({"text": "a single lonely example of its class", "label": "odd", "author": "z"}) + "\n"
        )
    labels = protocol.data.model_copy(update={"labels": ["neg", "pos", "odd"]})
    protocol = protocol.model_copy(update={"data": labels})
    with pytest.raises(DataValidationError) as err:
        prepare_on_cluster(protocol, tmp_path, tmp_path / "out", client)
    assert "odd" in str(err.value) and "at least 2 rows" in str(err.value)
    assert not (tmp_path / "out" / "train").exists()


def test_bad_rows_name_their_file_and_line(tmp_path: Path, client: Any) -> None:
    from tuneproof.data.cluster.stage import prepare_on_cluster

    protocol = _protocol(tmp_path)
    lines = (tmp_path / "b.jsonl").read_text().splitlines()
    lines[100] = "{not json"
    lines[150] = json.dumps({"text": "fine words here", "label": "maybe", "author": "a3"})
    (tmp_path / "b.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataValidationError) as err:
        prepare_on_cluster(protocol, tmp_path, tmp_path / "out", client)
    where = {p.where for p in err.value.problems}
    assert where == {f"{tmp_path / 'b.jsonl'}:101", f"{tmp_path / 'b.jsonl'}:151"}
    assert not (tmp_path / "out").exists()
