"""The file-first pieces: `tuneproof schema`, the generated reference, `$schema` lines, several files
to `validate`, and `tuneproof init` writing a protocol that validates with its data."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import jsonschema_rs
import pytest
import yaml
from typer.testing import CliRunner

from tuneproof.cli import app
from tuneproof.protocol.check import check_protocol
from tuneproof.protocol.jsonschema import missing_descriptions, protocol_json_schema
from tuneproof.protocol.reference import protocol_reference, render_markdown, schema_text

ROOT = Path(__file__).parents[2]
PROTOCOLS = sorted((ROOT / "examples").glob("*.yaml")) + sorted((ROOT / "docs" / "protocols").glob("*.yaml"))
runner = CliRunner()


def test_every_key_has_a_description_and_factory_defaults_are_shown() -> None:
    schema = protocol_json_schema()
    assert missing_descriptions(schema) == []
    baselines = schema["$defs"]["EvaluateSpec"]["properties"]["baselines"]
    assert baselines["default"] == ["majority", "tfidf_logreg"]
    assert "classification" in schema["properties"]["task"]["enum"]


def test_a_key_without_description_is_reported() -> None:
    schema = protocol_json_schema()
    del schema["$defs"]["ImbalanceSpec"]["properties"]["strategy"]["description"]
    assert missing_descriptions(schema) == ["ImbalanceSpec.strategy"]


def test_committed_reference_and_schema_are_current() -> None:
    hint = "stale: run `python scripts/gen_protocol_docs.py`"
    assert (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8") == protocol_reference(), hint
    assert (ROOT / "docs" / "protocol.schema.json").read_text(encoding="utf-8") == schema_text(), hint


def test_reference_lists_every_key_with_default_imbalance_included() -> None:
    text = protocol_reference()
    assert "| `imbalance.strategy` |" in text
    assert '`"auto"`' in text.split("| `imbalance.strategy` |")[1].split("\n")[0]  # the default
    for key in (
        "train.learning_rate",
        "split.min_test_rows",
        "cleaning.near_duplicates.threshold",
    ):
        assert f"| `{key}` |" in text, key
    # Gates are a shared model (the protocol's gates and export.gates): documented once, by key.
    gates = text.split("## GateSpec (used in several places)")[1]
    assert "| `beats` |" in gates.split("\n## ")[0]


def test_a_schema_change_changes_the_reference() -> None:
    schema = protocol_json_schema()
    schema["$defs"]["ImbalanceSpec"]["properties"]["strategy"]["description"] = "changed words"
    assert "changed words" in render_markdown(schema)
    assert "changed words" not in protocol_reference()


@pytest.mark.parametrize("path", PROTOCOLS, ids=lambda p: p.name)
def test_protocol_names_the_schema_and_matches_it(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    target = (path.parent / first.split("$schema=", 1)[1]).resolve()
    assert target == (ROOT / "docs" / "protocol.schema.json").resolve()
    validator = jsonschema_rs.validator_for(json.loads(target.read_text()))
    errors = [e.message for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == []


def test_json_schema_refuses_what_pydantic_refuses() -> None:
    validator = jsonschema_rs.validator_for(protocol_json_schema())
    good = {"name": "x", "model": {"source": "m"}, "data": {"files": ["a.csv"]}}
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "trian": {}})
    assert not validator.is_valid({**good, "train": {"learning_rate": -1}})


def test_schema_command_prints_the_schema() -> None:
    res = runner.invoke(app, ["schema"])
    assert res.exit_code == 0
    assert json.loads(res.stdout) == protocol_json_schema()


def _protocol(path: Path, model: Path, data: str, extra: str = "") -> Path:
    path.write_text(
        f"name: p\nmodel: {{source: {model}, max_length: 32}}\n"
        f"data: {{files: [{data}], labels: [neg, pos]}}\n{extra}"
    )
    return path


def test_validate_takes_several_files_and_reports_each(tmp_path: Path, tiny_bert: Path) -> None:
    a = _protocol(tmp_path / "a.yaml", tiny_bert, "d.jsonl")
    b = _protocol(tmp_path / "b.yaml", tiny_bert, "d.jsonl")
    bad = _protocol(tmp_path / "bad.yaml", tiny_bert, "d.jsonl", "train: {learning_rate: -1}\n")
    res = runner.invoke(app, ["validate", "--no-data", str(a), str(b)])
    assert res.exit_code == 0, res.output
    assert f"{a}: valid" in res.stdout and f"{b}: valid" in res.stdout
    res = runner.invoke(app, ["validate", "--no-data", str(a), str(bad), str(b)])
    assert res.exit_code == 2
    assert f"{a}: valid" in res.stdout and f"{b}: valid" in res.stdout
    assert "train.learning_rate" in res.stderr and str(bad) in res.stderr


def test_validate_exit_code_prefers_protocol_errors_over_data_errors(tmp_path: Path, tiny_bert: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"text": "good", "label": "pos"}\n{"text": "bad", "label": "maybe"}\n')
    data_bad = _protocol(tmp_path / "a.yaml", tiny_bert, "d.jsonl")
    proto_bad = _protocol(tmp_path / "b.yaml", tiny_bert, "d.jsonl", "trian: {}\n")
    assert runner.invoke(app, ["validate", str(data_bad)]).exit_code == 3
    res = runner.invoke(app, ["validate", str(data_bad), str(proto_bad)])
    assert res.exit_code == 2
    assert "maybe" in res.stderr and "trian" in res.stderr


def _reviews_csv(path: Path, per_class: dict[str, int], seed: int = 0) -> Path:
    rng = random.Random(seed)
    words = ["plot", "actor", "scene", "music", "story", "ending", "camera", "dialogue"]
    rows = []
    i = 0
    for label, n in per_class.items():
        for _ in range(n):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(4, 14))) + f" {label} review {i}"
            rows.append({"id": str(i), "review": text, "sentiment": label, "source": rng.choice(["a", "b"])})
            i += 1
    rng.shuffle(rows)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "review", "sentiment", "source"])
        w.writeheader()
        w.writerows(rows)
    return path


def test_init_writes_a_protocol_from_the_data_that_validates(tmp_path: Path) -> None:
    data = _reviews_csv(tmp_path / "reviews.csv", {"good": 70, "bad": 50})
    out = tmp_path / "protocol.yaml"
    res = runner.invoke(app, ["init", str(data), "--task", "classification", "-o", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    raw = yaml.safe_load(text)
    assert raw["data"]["text_column"] == "review"
    assert raw["data"]["label_column"] == "sentiment"
    assert raw["data"]["labels"] == ["bad", "good"]
    assert raw["data"]["files"] == ["reviews.csv"]
    # 120 rows: 20 test rows need 1/6, with a fifth to spare 0.2 (5 of the smallest class need only 0.12).
    assert raw["split"] == {"train": 0.6, "validation": 0.2, "test": 0.2}
    assert raw["imbalance"] == {"strategy": "none"}
    assert text.count("\n# ") >= 8  # a comment on each choice
    loaded, problems = check_protocol(out, read_data=True)
    assert loaded is not None and [str(p) for p in problems] == []


def test_init_weights_unequal_classes_and_keeps_chosen_labels(tmp_path: Path) -> None:
    data = _reviews_csv(tmp_path / "r.csv", {"good": 200, "bad": 40, "meh": 30})
    out = tmp_path / "p.yaml"
    res = runner.invoke(app, ["init", str(data), "-o", str(out), "--labels", "good,bad"])
    assert res.exit_code == 0, res.output
    raw = yaml.safe_load(out.read_text())
    assert raw["data"]["keep_if"] == {"sentiment": ["good", "bad"]}
    assert raw["imbalance"] == {"strategy": "class_weights"}
    assert check_protocol(out)[1] == []


def test_init_refuses_data_too_small_and_writes_nothing(tmp_path: Path) -> None:
    data = _reviews_csv(tmp_path / "small.csv", {"good": 12, "bad": 10})
    out = tmp_path / "p.yaml"
    res = runner.invoke(app, ["init", str(data), "-o", str(out)])
    assert res.exit_code == 3
    assert "too few" in res.stderr
    assert not out.exists() and list(tmp_path.glob(".*draft")) == []


def test_init_names_an_unknown_column(tmp_path: Path) -> None:
    data = _reviews_csv(tmp_path / "r.csv", {"good": 70, "bad": 50})
    res = runner.invoke(app, ["init", str(data), "-o", str(tmp_path / "p.yaml"), "--text-column", "body"])
    assert res.exit_code == 3
    assert "'body' is not a column" in res.stderr
