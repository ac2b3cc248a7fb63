"""Cleaning must not destroy a data set by default, and a split too small to decide gates is refused.

Numbers are content (templated records survive near-duplicate removal), a stage that removes too
much stops the run before training (exit 3, the stage named, removed rows beside what they were
judged to duplicate), splits below their minimums are refused, and a gate on a tiny test split is
undecidable, never passed.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
from scipy.stats import beta
from typer.testing import CliRunner

from helpers import NEUTRAL, POSITIVE, patient_records, toy_reviews, write_jsonl, write_protocol
from tuneproof.cli import app
from tuneproof.data.prepare import prepare_data
from tuneproof.errors import DataValidationError
from tuneproof.gates import check_gates
from tuneproof.gates.check import rows_needed
from tuneproof.protocol import parse_protocol
from tuneproof.protocol.schema import GateSpec

LABELS = "[disease, healthy]"


def _protocol(data: Path, extra: str = "", labels: str = LABELS) -> Any:
    return parse_protocol(
        f"name: t\nmodel: {{source: m/m}}\ndata: {{files: [{data}], labels: {labels}}}\n{extra}\n"
    )


def _records(tmp_path: Path, n: int = 918) -> Path:
    return write_jsonl(tmp_path / "records.jsonl", patient_records(n))  # type: ignore[arg-type]


def test_templated_records_keep_their_rows_under_the_default_protocol(tmp_path: Path) -> None:
    prepared = prepare_data(_protocol(_records(tmp_path)), tmp_path)
    kept = sum(len(s) for s in prepared.splits.values())
    assert kept >= 0.99 * 918, prepared.report["removed"]
    assert prepared.report["split_sizes"]["test"]["rows"] >= 90
    assert "digits compared" in prepared.report["near_duplicates"]["method"]


def _review(rng: random.Random, n_words: int = 60) -> list[str]:
    return [rng.choice(NEUTRAL + POSITIVE) + rng.choice(["", "s", "ly"]) for _ in range(n_words)]


def test_real_near_duplicates_are_still_removed(tmp_path: Path) -> None:
    rng = random.Random(3)
    rows = []
    for i in range(200):
        words = _review(rng)
        rows.append({"text": " ".join(words), "label": ["neg", "pos"][i % 2]})
    originals = list(rows)
    for i in range(0, 200, 20):  # the same review with one word changed
        words = originals[i]["text"].split()
        words[len(words) // 2] = "tedious"
        rows.append({"text": " ".join(words), "label": originals[i]["label"]})
    f = write_jsonl(tmp_path / "reviews.jsonl", rows)  # type: ignore[arg-type]
    prepared = prepare_data(_protocol(f, labels="[neg, pos]"), tmp_path)
    assert prepared.report["removed"]["near_duplicates"] == 10
    stage = next(s for s in prepared.report["stages"] if s["stage"] == "near_duplicates")
    pair = stage["examples"][0]
    assert pair["row_id"].endswith(":201") and pair["kept_id"].endswith(":1")
    assert pair["similarity"] >= 0.9 and "tedious" in pair["text"] and "tedious" not in pair["kept_text"]


def test_near_key_switches_keep_signs_and_decimals_unless_digits_are_stripped() -> None:
    from tuneproof.data.clean import near_key
    from tuneproof.protocol.schema import NearDuplicateSpec

    spec = NearDuplicateSpec()
    assert near_key("Dose: -5 mg, 1.5 ml!!", spec) == "dose -5 mg 1.5 ml"
    assert near_key("5 mg", spec) != near_key("50 mg", spec)
    assert near_key("5 mg", NearDuplicateSpec(strip_digits=True)) == near_key(
        "50 mg", NearDuplicateSpec(strip_digits=True)
    )
    assert near_key("Great mM", NearDuplicateSpec(casefold=False, strip_punctuation=False)) == "Great mM"


STRIP_DIGITS = "cleaning: {near_duplicates: {strip_digits: true}}"


def test_a_destructive_stage_stops_before_training_naming_the_stage(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError) as info:
        prepare_data(_protocol(_records(tmp_path), STRIP_DIGITS), tmp_path)
    assert info.value.exit_code == 3
    first = info.value.problems[0]
    assert first.where == "cleaning.near_duplicates"
    assert "stage 'near_duplicates' would remove" in first.message and "of 918 rows" in first.message
    frac = float(first.message.split("rows (")[1].split("%")[0]) / 100
    assert frac > 0.9
    # A few removed rows are shown beside the row each was judged a duplicate of.
    examples = [
        p
        for p in info.value.problems
        if "as a repeat of records.jsonl:" in p.message and "(near duplicate, Jaccard" in p.message
    ]
    assert len(examples) == 3 and all(p.where.startswith("records.jsonl:") for p in examples)
    assert any(p.where == "cleaning.max_removed_fraction.total" for p in info.value.problems)


def test_the_limit_raised_explicitly_lets_the_removal_proceed(tmp_path: Path) -> None:
    extra = (
        "cleaning: {near_duplicates: {strip_digits: true}, max_removed_fraction: 0.97}\n"
        "split: {enforce_minimums: false}"
    )
    prepared = prepare_data(_protocol(_records(tmp_path), extra), tmp_path)
    removed = prepared.report["removed"]["near_duplicates"]
    assert removed > 0.9 * 918
    assert sum(len(s) for s in prepared.splits.values()) == 918 - removed
    assert prepared.report["removal_limits"]["per_stage"] == 0.97


def test_a_per_stage_limit_applies_to_that_stage_only(tmp_path: Path) -> None:
    extra = (
        "cleaning: {near_duplicates: {strip_digits: true}, "
        "max_removed_fraction: {stages: {near_duplicates: 0.97}}}"
    )
    with pytest.raises(DataValidationError) as info:
        prepare_data(_protocol(_records(tmp_path), extra), tmp_path)
    # The stage may, but the default total (0.2) still holds.
    assert [p.where for p in info.value.problems] == ["cleaning.max_removed_fraction.total"]


def test_a_split_below_its_floor_is_refused_naming_the_split_and_its_size(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError) as info:
        prepare_data(_protocol(_records(tmp_path, 150)), tmp_path)
    msgs = [str(p) for p in info.value.problems]
    assert any(m.startswith("split.test: the test split has 15 rows, fewer than the 20") for m in msgs), msgs
    gates = "gates: [{metric: accuracy, min: 0.95}]"
    with pytest.raises(DataValidationError) as info:
        prepare_data(_protocol(_records(tmp_path, 500), gates), tmp_path)
    msgs = [str(p) for p in info.value.problems]
    assert any(
        "the test split has 50 rows, fewer than the 72 that gates[0] (accuracy >= 0.95) needs" in m
        for m in msgs
    )
    with pytest.raises(DataValidationError, match="the train split has 24 rows, fewer than the 30"):
        prepare_data(
            _protocol(
                _records(tmp_path, 30),
                "split: {min_test_rows: 1, min_test_rows_per_class: 1}",
            ),
            tmp_path,
        )


@pytest.mark.parametrize(
    "gate",
    [
        GateSpec(metric="accuracy", min=0.1),
        GateSpec(metric="accuracy", min=0.75),
        GateSpec(metric="ece", max=0.5),
        GateSpec(metric="accuracy", beats="majority"),
        GateSpec(metric="accuracy", slice_min=0.0),
    ],
    ids=lambda g: g.label,
)
def test_a_gate_on_a_two_row_test_split_can_never_pass(gate: GateSpec) -> None:
    perfect = {"value": 1.0, "low": 1.0, "high": 1.0}  # what a percentile bootstrap gives on 2 right answers
    metrics = {
        "n": 2,
        "confidence": 0.95,
        "model": {"accuracy": perfect, "ece": {"value": 0.0, "low": 0.0, "high": 0.0}},
        "comparisons": {"majority": {"accuracy": {"diff": 0.5, "low": 0.5, "high": 0.5}}},
        "slices": [{"name": "all", "n": 2, "metrics": {"accuracy": 1.0}}],
    }
    result = check_gates([gate], metrics).to_json()
    assert result["passed"] is False and result["undecidable"] == [gate.label]
    assert "undecidable: the test split has 2 rows" in result["verdicts"][0]["detail"]
    assert check_gates([gate], {**metrics, "n": 200}).passed is True  # the same numbers on enough rows


@pytest.mark.parametrize("threshold", [0.5, 0.75, 0.9, 0.95])
def test_rows_needed_is_where_a_perfect_score_first_clears_the_threshold(threshold: float) -> None:
    n = rows_needed(GateSpec(metric="accuracy", min=threshold), 0.95)
    # Clopper-Pearson lower bound of n successes in n trials at 95%.
    assert beta.ppf(0.025, n, 1) >= threshold > beta.ppf(0.025, n - 1, 1)
    assert rows_needed(GateSpec(metric="loss", max=1.0), 0.95) == math.ceil(math.log2(40))


def _cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_validate_reports_the_destructive_stage_with_exit_3(tmp_path: Path, tiny_bert: Path) -> None:
    data = _records(tmp_path)
    proto = write_protocol(tmp_path / "p.yaml", tiny_bert, data)
    text = (
        proto.read_text()
        .replace("labels: [neg, pos]", f"labels: {LABELS}")
        .replace("  metadata_columns: [genre]\n", "")
    )
    text = text.replace(
        "  slices: [{by: column, column: genre}, {by: length, edges: [8]}]\n",
        "",
    )
    proto.write_text(text)
    assert _cli("validate", str(proto)).exit_code == 0
    proto.write_text(text + STRIP_DIGITS + "\n")
    res = _cli("validate", str(proto))
    assert res.exit_code == 3, res.output
    assert "cleaning.near_duplicates: stage 'near_duplicates' would remove" in res.output
    res = _cli("run", str(proto), "--output-dir", str(tmp_path / "runs"))
    assert res.exit_code == 3 and "stopped before training" in res.output
    assert not (tmp_path / "runs").exists()  # nothing half-written: no run folder was started


def test_a_small_split_is_refused_by_run_before_training(tmp_path: Path, tiny_bert: Path) -> None:
    data = write_jsonl(tmp_path / "reviews.jsonl", toy_reviews(120))  # type: ignore[arg-type]
    proto = write_protocol(tmp_path / "p.yaml", tiny_bert, data)
    res = _cli("run", str(proto), "--output-dir", str(tmp_path / "runs"))
    assert res.exit_code == 3, res.output
    assert "split.test: the test split has 12 rows, fewer than the 20" in res.output
    assert not (tmp_path / "runs").exists()


def test_reports_json_lists_removed_pairs(tmp_path: Path) -> None:
    rows = toy_reviews(300)
    rows += [dict(rows[i]) for i in range(0, 20, 2)]  # 10 exact copies
    f = write_jsonl(tmp_path / "r.jsonl", rows)  # type: ignore[arg-type]
    prepared = prepare_data(_protocol(f, labels="[neg, pos]"), tmp_path)
    stage = next(s for s in prepared.report["stages"] if s["stage"] == "exact_duplicates")
    assert stage["removed"] == 10 and len(stage["examples"]) == 10
    assert all(e["text"] == e["kept_text"] and e["row_id"] != e["kept_id"] for e in stage["examples"])
    json.dumps(prepared.report)  # the report stays JSON


def test_the_918_records_with_no_cleaning_section_train_and_their_gates_decide(
    tmp_path: Path, tiny_bert: Path
) -> None:
    """The issue's case end to end: every default, no `cleaning:` section; almost all rows kept, the
    model trains, and every gate is decided on a test split large enough to decide it."""
    import json

    data = _records(tmp_path)
    proto = tmp_path / "records.yaml"
    proto.write_text(
        f"""
name: records
seed: 7
model: {{source: {tiny_bert}, max_length: 64}}
data: {{files: [{data}], labels: {LABELS}}}
train: {{epochs: 2, batch_size: 32, learning_rate: 0.003, scheduler: constant, precision: fp32}}
evaluate: {{bootstrap_samples: 200, baselines: [majority]}}
gates:
  - {{metric: accuracy, min: 0.5}}
  - {{metric: macro_f1, beats: majority, by: 0.0}}
"""
    )
    res = _cli("run", str(proto), "--output-dir", str(tmp_path / "runs"))
    assert res.exit_code in (0, 4), res.output  # trained and decided, whichever way the gates went
    run_dir = next((tmp_path / "runs").iterdir())
    report = json.loads((run_dir / "data_report.json").read_text())
    kept = sum(s["rows"] for s in report["splits"].values())
    assert kept >= 0.99 * 918, report["removed"]
    gates = json.loads((run_dir / "gates.json").read_text())
    assert gates["undecidable"] == [] and len(gates["verdicts"]) == 2
    assert report["splits"]["test"]["rows"] >= 90
