"""The data stage at scale: column-wise MinHash equal to datasketch's, the same near-duplicate and
leakage decisions as the per-text index, capped problem lists, and `tuneproof prepare`."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from helpers import toy_reviews, write_jsonl, write_protocol
from tuneproof.cli import app
from tuneproof.data import minhash_kernel, near_dup
from tuneproof.data.clean import NearDuplicateIndex, _shingles, dedup_key, near_key, shingle_set
from tuneproof.data.prepare import prepare_data, split_hash
from tuneproof.data.problems import PROBLEMS_PER_FILE
from tuneproof.data.split import find_leaks
from tuneproof.errors import DataValidationError
from tuneproof.protocol import parse_protocol
from tuneproof.protocol.schema import LeakageSpec, NearDuplicateSpec

SPEC = NearDuplicateSpec(threshold=0.9, shingle_chars=5)
ODD = ["", "a", "abcd", "abcde", "abcdef", "Hello, world!", "héllo wörld 𝄞 ünïcode", "-5 mg 1.5 ml", "ab  cd"]


def _texts(n: int, seed: int = 0) -> list[str]:
    """Random texts, a tenth of them one word away from an earlier one."""
    rng = random.Random(seed)
    words = [f"w{i}x" for i in range(300)]
    out: list[str] = []
    for _ in range(n):
        if out and rng.random() < 0.1:
            t = rng.choice(out).split()
            t[rng.randrange(len(t))] = rng.choice(words)
            out.append(" ".join(t))
        else:
            out.append(" ".join(rng.choice(words) for _ in range(rng.randint(8, 40))))
    return out


def _datasketch_sig(text: str, spec: NearDuplicateSpec) -> np.ndarray:
    from datasketch import MinHash

    m = MinHash(num_perm=spec.num_perm, seed=1)
    m.update_batch(list(_shingles(text, spec)))
    return np.asarray(m.hashvalues)


@pytest.mark.parametrize("compiled", [True, False])
def test_signatures_are_datasketchs_bit_for_bit(compiled: bool) -> None:
    texts = ODD + _texts(200)
    if not compiled:
        minhash_kernel.use_numpy_only()
    try:
        for k in (3, 5):
            spec = NearDuplicateSpec(shingle_chars=k, num_perm=64)
            sig = near_dup.signatures([near_key(t, spec) for t in texts], k, 64, workers=1)
            want = np.stack([_datasketch_sig(t, spec) for t in texts])
            assert sig.dtype == np.uint32 and (sig == want).all()
    finally:
        minhash_kernel.reset()


@pytest.mark.integration  # starts two spawned processes
def test_two_processes_give_the_same_signatures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(near_dup, "PARALLEL_MIN_ROWS", 10)
    monkeypatch.setattr(near_dup, "BLOCK", 64)
    keys = [near_key(t, SPEC) for t in _texts(300, seed=3)]
    one = near_dup.signatures(keys, 5, 128, workers=1)
    two = near_dup.signatures(keys, 5, 128, workers=2)
    assert (one == two).all()


def _per_text_greedy(texts: list[str], groups: list[str]) -> tuple[list[bool], list[tuple[int, int]]]:
    """Today's form: one datasketch index per group, each text queried before it is inserted."""
    indexes: dict[str, NearDuplicateIndex] = {}
    keep, pairs = [], []
    for j, (t, g) in enumerate(zip(texts, groups, strict=True)):
        index = indexes.setdefault(g, NearDuplicateIndex(SPEC))
        hits = index.query(t)
        if hits:
            pairs.append((j, int(max(hits, key=lambda h: (h[1], -int(h[0])))[0])))
        else:
            index.add(str(j), t)
        keep.append(not hits)
    return keep, pairs


def test_near_duplicate_decisions_match_the_per_text_index() -> None:
    texts = _texts(300, seed=1)
    groups = ["a" if i % 3 else "b" for i in range(len(texts))]
    sig = near_dup.signatures([near_key(t, SPEC) for t in texts], 5, 128, workers=1)
    keep, hits = near_dup.greedy_near_duplicates(sig, groups, lambda i: shingle_set(texts[i], SPEC), 0.9)
    want_keep, want_pairs = _per_text_greedy(texts, groups)
    assert keep.tolist() == want_keep
    assert (~keep).sum() >= 5  # the data has near duplicates to find (6 with this seed)
    assert [(h.row, h.kept) for h in hits] == want_pairs
    assert all(h.similarity >= 0.9 and groups[h.row] == groups[h.kept] for h in hits)


def test_leakage_with_precomputed_signatures_is_the_same_as_without() -> None:
    texts = _texts(400, seed=2)
    parts = {"train": texts[:300], "validation": texts[300:350], "test": texts[350:]}
    ids = {s: [f"r{i}" for i in range(len(p))] for s, p in parts.items()}
    sigs = {s: near_dup.signatures([near_key(t, SPEC) for t in p], 5, 128, 1) for s, p in parts.items()}
    spec = LeakageSpec(exact=True, near=True, action="remove")
    a = find_leaks(parts, ids, spec, SPEC)
    b = find_leaks(parts, ids, spec, SPEC, sigs)
    assert a.near > 3 and (a.exact, a.near, a.leaked, a.examples) == (b.exact, b.near, b.leaked, b.examples)
    # The same again from one shuffled matrix and each split's row positions in it (no copies).
    order = np.random.default_rng(3).permutation(len(texts))
    flat = [t for p in parts.values() for t in p]
    matrix = near_dup.signatures([near_key(flat[i], SPEC) for i in order], 5, 128, 1)
    where = np.argsort(order)  # where[i]: row of flat text i in the matrix
    starts = {"train": 0, "validation": 300, "test": 350}
    rows = {s: where[starts[s] : starts[s] + len(p)] for s, p in parts.items()}
    c = find_leaks(parts, ids, spec, SPEC, signature_rows=(matrix, rows))
    assert (a.exact, a.near, a.leaked, a.examples) == (c.exact, c.near, c.leaked, c.examples)
    # With the cleaning stage's keys passed in (and an exact repeat, case changed), the same leaks.
    with_exact = {**parts, "test": [*parts["test"], parts["train"][7].upper()]}
    ids2 = {s: [f"r{i}" for i in range(len(p))] for s, p in with_exact.items()}
    keys = {s: [dedup_key(t) for t in p] for s, p in with_exact.items()}
    e = find_leaks(with_exact, ids2, spec, SPEC)
    d = find_leaks(with_exact, ids2, spec, SPEC, keys=keys)
    assert e.exact >= 1 and (e.exact, e.near, e.leaked, e.examples) == (d.exact, d.near, d.leaked, d.examples)
    # Every leaked row has an earlier-split row at Jaccard >= 0.9 or with the same key.
    earlier = parts["train"]
    for pos in a.leaked["validation"]:
        sh = shingle_set(parts["validation"][pos], SPEC)
        assert max(near_dup.jaccard(sh, shingle_set(t, SPEC)) for t in earlier) >= 0.9


def test_compact_rows_equals_fancy_indexing_across_block_edges() -> None:
    rng = np.random.default_rng(4)
    sig = rng.integers(0, 2**32, size=(1000, 8), dtype=np.uint32)
    keep = rng.random(1000) < 0.6
    keep[:5] = False  # the first kept row moves, so the move is not a no-op
    want = sig[keep].copy()
    got = near_dup.compact_rows(sig, keep, block=37)
    assert got.base is sig or got.base is sig.base  # a view of the input, not a new matrix
    np.testing.assert_array_equal(got, want)


def test_bad_rows_are_listed_per_file_up_to_the_cap_and_the_rest_counted(tmp_path: Path) -> None:
    n_bad = PROBLEMS_PER_FILE + 57
    rows = [{"text": f"text number {i}", "label": "pos" if i % 2 else "neg"} for i in range(300)]
    rows += [{"text": f"bad {i}", "label": "maybe"} for i in range(n_bad)]
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    protocol = parse_protocol(
        f"name: t\nmodel: {{source: m/m}}\ndata: {{files: [{data}], labels: [neg, pos]}}\n"
    )
    with pytest.raises(DataValidationError) as err:
        prepare_data(protocol, tmp_path)
    problems = err.value.problems
    assert len(problems) == PROBLEMS_PER_FILE + 1
    assert problems[0].where == f"{data}:301" and "unknown label 'maybe'" in problems[0].message
    assert problems[-1].where == str(data) and f"and {n_bad - PROBLEMS_PER_FILE} more" in problems[-1].message


def test_a_jsonl_file_missing_a_column_reports_the_column_not_its_rows(tmp_path: Path) -> None:
    good = write_jsonl(tmp_path / "good.jsonl", [{"text": f"a b c {i}", "label": "pos"} for i in range(5)])
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"body": "x", "label": "maybe"}] * 5)
    protocol = parse_protocol(
        f"name: t\nmodel: {{source: m/m}}\ndata: {{files: [{good}, {bad}], labels: [neg, pos]}}\n"
    )
    with pytest.raises(DataValidationError) as err:
        prepare_data(protocol, tmp_path)
    assert [p.where for p in err.value.problems] == [str(bad)]
    assert "column 'text'" in err.value.problems[0].message


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_prepare_writes_the_data_stage_as_run_writes_it(tmp_path: Path, tiny_bert: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", toy_reviews(400))
    proto = write_protocol(tmp_path / "p.yaml", tiny_bert, data)
    out = tmp_path / "out"
    result = _cli("prepare", str(proto), "--output-dir", str(out))
    assert result.exit_code == 0, result.output
    (folder,) = out.iterdir()
    assert str(folder) in result.output and folder.name.startswith("tiny-prepared-")
    report = json.loads((folder / "data_report.json").read_text())
    summary = json.loads((folder / "prepared.json").read_text())
    for split in ("train", "validation", "test"):
        df = pd.read_parquet(folder / "data" / f"{split}.parquet")
        assert split_hash(df) == report["splits"][split]["sha256"] == summary["splits"][split]
        assert len(df) == report["splits"][split]["rows"]
    assert sum(summary["rows"].values()) + sum(report["removed"].values()) == 400
    assert (folder / "protocol.yaml").exists() and (folder / "protocol.source.yaml").exists()


def test_prepare_exits_3_on_bad_data_and_writes_nothing(tmp_path: Path, tiny_bert: Path) -> None:
    rows = toy_reviews(100)
    rows[5]["label"] = "maybe"
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    proto = write_protocol(tmp_path / "p.yaml", tiny_bert, data)
    out = tmp_path / "out"
    result = _cli("prepare", str(proto), "--output-dir", str(out))
    assert result.exit_code == 3
    assert f"{data}:6" in result.output and "unknown label 'maybe'" in result.output
    assert not out.exists() or not any(out.iterdir())


def test_data_workers_uses_a_second_process_only_on_a_free_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TUNEPROOF_DATA_WORKERS", raising=False)
    monkeypatch.setattr(near_dup.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(near_dup.os, "getloadavg", lambda: (0.8, 0.0, 0.0))
    assert near_dup.data_workers() == 2
    monkeypatch.setattr(near_dup.os, "getloadavg", lambda: (1.5, 0.0, 0.0))
    assert near_dup.data_workers() == 1
    monkeypatch.setattr(near_dup.os, "cpu_count", lambda: 1)
    monkeypatch.setattr(near_dup.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert near_dup.data_workers() == 1
    monkeypatch.setenv("TUNEPROOF_DATA_WORKERS", "3")
    assert near_dup.data_workers() == 3
