"""The version is written once, in pyproject.toml, and read from the package metadata elsewhere."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import tuneproof

ROOT = Path(__file__).resolve().parents[2]


def test_version_comes_from_the_package_metadata() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert tuneproof.__version__ == metadata.version("tuneproof") == declared


def test_no_module_writes_the_version_by_hand() -> None:
    declared = re.escape(tuneproof.__version__)
    pattern = re.compile(rf"[\"']{declared}[\"']")
    sources = (ROOT / "tuneproof").rglob("*.py")
    hits = [str(p.relative_to(ROOT)) for p in sources if pattern.search(p.read_text())]
    assert hits == []
