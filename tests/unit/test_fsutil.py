"""Atomic writes give files the mode the umask asks for, like every other file of a run folder."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tuneproof.fsutil import atomic_write_json, atomic_write_text, current_umask


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_writes_honour_the_umask_like_open(tmp_path: Path, umask: None, mask: int) -> None:
    os.umask(mask)
    assert current_umask() == mask
    atomic_write_json(tmp_path / "metrics.json", {"a": 1})
    atomic_write_text(tmp_path / "notes.txt", "x")
    (tmp_path / "plain.txt").write_text("x")  # what open() makes under this umask
    want = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert want == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == want
    assert stat.S_IMODE((tmp_path / "notes.txt").stat().st_mode) == want


def test_an_overwrite_keeps_the_content_and_leaves_no_temporary_file(tmp_path: Path, umask: None) -> None:
    os.umask(0o022)
    target = tmp_path / "m.json"
    atomic_write_json(target, {"v": 1})
    atomic_write_json(target, {"v": 2})
    assert target.read_text() == '{\n "v": 2\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
