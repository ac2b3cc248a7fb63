"""The data stage: one-pass validation with file:line, counted cleaning, seeded splits, leakage."""

from __future__ import annotations

import bz2
import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from tuneproof.data.prepare import prepare_data, read_and_validate
from tuneproof.errors import DataValidationError
from tuneproof.protocol import parse_protocol


def protocol_for(data_files: list[Path], **sections: str) -> object:
    files = ", ".join(str(p) for p in data_files)
    sections.setdefault("model", "{source: some/model}")
    # These fixtures are small on purpose; the split-size minimums have their own tests.
    sections.setdefault("split", "{enforce_minimums: false}")
    extra = "\n".join(f"{k}: {v}" for k, v in sections.items())
    return parse_protocol(f"name: t\ndata: {{files: [{files}], labels: [neg, pos]}}\n{extra}\n")


WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike oscar papa".split()


def rows(n: int, prefix: str = "text") -> list[dict[str, str]]:
    """Distinct texts that differ in words, not only in numbers."""
    out = []
    for i in range(n):
        words = [
            WORDS[(i * 7 + j * 3) % len(WORDS)] + WORDS[(i // len(WORDS) + j) % len(WORDS)] for j in range(4)
        ]
        label = "pos" if i % 2 else "neg"
        out.append({"text": f"{prefix} {' '.join(words)} {'great' if i % 2 else 'awful'}", "label": label})
    return out


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_every_problem_in_a_csv_is_reported_with_its_line(tmp_path: Path) -> None:
    f = write_csv(
        tmp_path / "d.csv",
        [
            "text,label",
            "fine film,pos",
            "too,many,fields",  # line 3: malformed
            '"unclosed quote,pos',  # swallows to EOF in lenient readers; strict mode reports it
        ],
    )
    f2 = write_csv(tmp_path / "e.csv", ["text,label", "good,pos", "bad,meh", "ok,"])
    with pytest.raises(DataValidationError) as info:
        read_and_validate(protocol_for([f, f2]), tmp_path)  # type: ignore[arg-type]
    msgs = [str(p) for p in info.value.problems]
    assert any(f"{f}:3: expected 2 fields, found 3" in m for m in msgs), msgs
    assert any(f"{f2}:3: unknown label 'meh'" in m for m in msgs), msgs
    assert any(f"{f2}:4: missing label" in m for m in msgs), msgs


def test_jsonl_problems_encoding_types_and_missing_columns(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_bytes(
        b'{"text": "good", "label": "pos"}\n'
        b'{"text": 5, "label": "pos"}\n'
        b"{not json}\n"
        b'{"text": "caf\xe9", "label": "neg"}\n'
        b'["a list"]\n'
    )
    g = tmp_path / "nocol.jsonl"
    g.write_text('{"body": "x", "label": "pos"}\n')
    with pytest.raises(DataValidationError) as info:
        read_and_validate(protocol_for([f, g]), tmp_path)  # type: ignore[arg-type]
    msgs = "\n".join(str(p) for p in info.value.problems)
    assert f"{f}:2: text must be a string, got int" in msgs
    assert f"{f}:3: malformed JSON" in msgs
    assert f"{f}:4: not valid utf-8" in msgs
    assert f"{f}:5: each line must be a JSON object" in msgs
    assert f"{g}: column 'text'" in msgs


def test_single_class_and_too_few_rows_per_class(tmp_path: Path) -> None:
    f = tmp_path / "one.jsonl"
    f.write_text("".join(json.dumps({"text": f"t{i}", "label": "pos"}) + "\n" for i in range(10)))
    with pytest.raises(DataValidationError, match="only one class"):
        read_and_validate(protocol_for([f]), tmp_path)  # type: ignore[arg-type]
    g = tmp_path / "few.jsonl"
    g.write_text("".join(json.dumps(r) + "\n" for r in [*rows(10)[::2], {"text": "lonely", "label": "pos"}]))
    with pytest.raises(DataValidationError, match="class 'pos' has 1 row"):
        read_and_validate(protocol_for([g]), tmp_path)  # type: ignore[arg-type]


def test_empty_texts_are_dropped_and_counted_or_refused(tmp_path: Path) -> None:
    data = [*rows(40), {"text": "   ", "label": "pos"}, {"text": None, "label": "neg"}]
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in data))
    prepared = prepare_data(protocol_for([f]), tmp_path)  # type: ignore[arg-type]
    assert prepared.report["removed"]["empty"] == 2
    assert sum(len(s) for s in prepared.splits.values()) == 40
    with pytest.raises(DataValidationError, match="empty text"):
        read_and_validate(protocol_for([f], cleaning="{drop_empty: false}"), tmp_path)  # type: ignore[arg-type]


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".csv.bz2", ".jsonl", ".parquet", "arrow"])
def test_formats_and_compression(tmp_path: Path, suffix: str) -> None:
    df = pd.DataFrame(rows(30))
    if suffix == ".parquet":
        path = tmp_path / "d.parquet"
        df.to_parquet(path)
    elif suffix == "arrow":
        from datasets import Dataset

        path = tmp_path / "saved"
        Dataset.from_pandas(df).save_to_disk(str(path))
    elif suffix == ".jsonl":
        path = tmp_path / "d.jsonl"
        df.to_json(path, orient="records", lines=True)
    else:
        text = df.to_csv(index=False).encode()
        path = tmp_path / f"d{suffix}"
        opener = {".csv.gz": gzip.compress, ".csv.bz2": bz2.compress}.get(suffix, lambda b: b)
        path.write_bytes(opener(text))
    prepared = prepare_data(protocol_for([path]), tmp_path)  # type: ignore[arg-type]
    assert sum(len(s) for s in prepared.splits.values()) == 30


def test_cleaning_counts_duplicates_near_duplicates_and_conflicts(tmp_path: Path) -> None:
    base = rows(60)
    extra = [
        {"text": base[1]["text"].upper(), "label": base[1]["label"]},  # exact after case-folding
        {"text": base[3]["text"] + "!!", "label": base[3]["label"]},  # near: punctuation only
        {"text": "the same words twice over", "label": "pos"},
        {"text": "the same words twice over", "label": "neg"},  # conflicting labels
    ]
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in base + extra))
    prepared = prepare_data(protocol_for([f]), tmp_path)  # type: ignore[arg-type]
    removed = prepared.report["removed"]
    assert removed["exact_duplicates"] == 1
    assert removed["near_duplicates"] == 1
    assert removed["conflicting_labels"] == 2
    assert sum(len(s) for s in prepared.splits.values()) == 60
    assert "Jaccard" in prepared.report["near_duplicates"]["method"]


def test_split_is_stratified_seeded_and_disjoint(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows(200)))
    p = protocol_for([f], seed="3")
    a = prepare_data(p, tmp_path)  # type: ignore[arg-type]
    b = prepare_data(p, tmp_path)  # type: ignore[arg-type]
    c = prepare_data(protocol_for([f], seed="4"), tmp_path)  # type: ignore[arg-type]
    assert a.report["splits"] == b.report["splits"]
    assert a.report["splits"]["test"]["sha256"] != c.report["splits"]["test"]["sha256"]
    ids = [set(a.splits[s]["row_id"]) for s in ("train", "validation", "test")]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert [len(a.splits[s]) for s in ("train", "validation", "test")] == [160, 20, 20]
    assert a.report["label_distribution"]["test"] == {"neg": 10, "pos": 10}


def _given_splits(tmp_path: Path, leak_action: str) -> object:
    train = rows(40, "train")
    test = [
        *rows(10, "test"),
        {"text": train[0]["text"], "label": train[0]["label"]},
        {"text": train[2]["text"] + " ...", "label": train[2]["label"]},
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test))
    return parse_protocol(
        f"name: t\nmodel: {{source: m/m}}\n"
        f"data: {{splits: {{train: [{tmp_path / 'train.jsonl'}], test: [{tmp_path / 'test.jsonl'}]}}}}\n"
        f"leakage: {{action: {leak_action}}}\n"
        # 2 of 12 test rows leak on purpose: over the default 10% limit on the leakage stage.
        "cleaning: {max_removed_fraction: {stages: {leakage: 0.2}}}\n"
        "split: {enforce_minimums: false}\n"
    )


def test_leaks_are_removed_from_the_evaluation_split(tmp_path: Path) -> None:
    prepared = prepare_data(_given_splits(tmp_path, "remove"), tmp_path)  # type: ignore[arg-type]
    leak = prepared.report["leakage"]
    assert (leak["exact"], leak["near"], leak["removed"]) == (1, 1, {"test": 2})
    assert len(prepared.splits["test"]) == 10 and len(prepared.splits["train"]) == 40


def test_leaks_can_fail_the_run(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="leak across splits"):
        prepare_data(_given_splits(tmp_path, "fail"), tmp_path)  # type: ignore[arg-type]


def test_truncation_is_reported_and_drop_removes(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows(40)))
    lengths = lambda texts: [100 if "great" in t else 5 for t in texts]  # noqa: E731
    p = protocol_for([f], model="{source: m/m, max_length: 50}")
    trunc = prepare_data(p, tmp_path, token_lengths=lengths)  # type: ignore[arg-type]
    over = trunc.report["truncation"]["over_length"]
    assert over > 0 and trunc.report["truncation"]["rate"] == pytest.approx(over / 40)
    dropped = prepare_data(
        protocol_for(
            [f],
            model="{source: m/m, max_length: 50}",  # type: ignore[arg-type]
            cleaning="{over_length: drop, max_removed_fraction: 0.6}",  # half the rows are long
        ),
        tmp_path,
        token_lengths=lengths,
    )
    assert dropped.report["removed"]["over_length"] == over
