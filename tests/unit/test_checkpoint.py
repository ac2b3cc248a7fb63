"""Crash-consistent checkpoints: complete ones are found, partial or corrupted ones never loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tuneproof.train.checkpoint import (
    MANIFEST,
    CheckpointContents,
    latest_complete,
    load_checkpoint,
    optimizer_from_flat,
    optimizer_to_flat,
    rotate,
    save_checkpoint,
)


def contents(step: int) -> CheckpointContents:
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    return CheckpointContents(
        model=dict(model.named_parameters()),
        optimizer=opt.state_dict(),
        scheduler={"last_epoch": step},
        rng=torch.get_rng_state(),
        state={"step": step},
    )


def test_round_trip_is_exact(tmp_path: Path) -> None:
    c = contents(5)
    path = save_checkpoint(tmp_path, 5, c)
    back = load_checkpoint(path)
    assert back.state == {"step": 5} and back.scheduler == {"last_epoch": 5}
    assert torch.equal(back.rng, c.rng)
    for k, v in c.model.items():
        assert torch.equal(back.model[k], v)
    a, b = c.optimizer, back.optimizer
    assert a["param_groups"] == b["param_groups"]
    for pid, st in a["state"].items():
        for name, value in st.items():
            assert torch.equal(value, b["state"][pid][name])
    assert not list(tmp_path.glob(".tmp-*"))
    assert sorted(p.name for p in path.iterdir()) == sorted(
        [
            "model.safetensors",
            "optimizer.safetensors",
            "optimizer.json",
            "scheduler.json",
            "rng.safetensors",
            "trainer_state.json",
            MANIFEST,
        ]
    )
    assert not [p for p in path.iterdir() if p.suffix in (".pt", ".pth", ".bin", ".pkl")]


def test_sgd_state_with_non_tensor_values_round_trips() -> None:
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    tensors, rest = optimizer_to_flat(opt.state_dict())
    json.dumps(rest)
    restored = optimizer_from_flat(tensors, rest)
    opt2 = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(restored)


def test_partial_checkpoint_is_skipped_and_reported(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 4, contents(4))
    newer = save_checkpoint(tmp_path, 8, contents(8))
    (newer / MANIFEST).unlink()  # as if killed after the files, before the manifest
    (tmp_path / ".tmp-checkpoint-12-999").mkdir()
    path, skipped = latest_complete(tmp_path)
    assert path is not None and path.name == "checkpoint-4"
    assert any("checkpoint-8: no checkpoint.json" in s for s in skipped)
    assert any(".tmp-checkpoint-12" in s for s in skipped)
    with pytest.raises(ValueError, match="incomplete"):
        load_checkpoint(newer)


def test_corrupted_file_fails_its_hash(tmp_path: Path) -> None:
    save_checkpoint(tmp_path, 4, contents(4))
    newer = save_checkpoint(tmp_path, 8, contents(8))
    data = bytearray((newer / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (newer / "model.safetensors").write_bytes(bytes(data))
    path, skipped = latest_complete(tmp_path)
    assert path is not None and path.name == "checkpoint-4"
    assert any("does not match its hash" in s for s in skipped)


def test_rotation_keeps_newest_and_best(tmp_path: Path) -> None:
    for step in (2, 4, 6, 8):
        save_checkpoint(tmp_path, step, contents(step))
    rotate(tmp_path, keep=2, protect={2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-6", "checkpoint-8"]
