"""Every protocol shipped under examples/ is a test case."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneproof.protocol import load_protocol
from tuneproof.protocol.check import check_protocol

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_protocol_loads(path: Path) -> None:
    loaded = load_protocol(path)
    assert loaded.protocol.name


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_protocol_validates_schema_model_and_gates(path: Path) -> None:
    _, problems = check_protocol(path, read_data=False)
    assert problems == []


def test_there_is_a_main_example() -> None:
    assert any(p.name == "review-sentiment.yaml" for p in EXAMPLES)
