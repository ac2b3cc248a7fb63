"""Crash-consistent checkpoints: complete ones are found, partial or corrupted ones never loaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import safetensors.torch
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
    original = opt.state_dict()
    tensors, rest = optimizer_to_flat(original)
    # through the bytes a checkpoint holds, so nothing is shared with the live optimizer
    restored = optimizer_from_flat(
        safetensors.torch.load(safetensors.torch.save(tensors)), json.loads(json.dumps(rest))
    )
    assert restored["param_groups"] == original["param_groups"]
    assert restored["state"].keys() == original["state"].keys()
    for key, state in original["state"].items():
        assert restored["state"][key].keys() == state.keys()
        for name, value in state.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(restored["state"][key][name], value), name
            else:
                assert restored["state"][key][name] == value, name
    opt2 = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt2.load_state_dict(restored)
    # the restored optimizer takes the same next step as the original
    before = [p.detach().clone() for p in model.parameters()]
    opt.step()
    after_original = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p, b in zip(model.parameters(), before, strict=True):
            p.copy_(b)
    opt2.step()
    for p, a in zip(model.parameters(), after_original, strict=True):
        assert torch.equal(p, a)


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


def test_full_state_path_writes_the_one_process_format_and_restores_it(tmp_path: Path) -> None:
    """The FSDP path (torch.distributed.checkpoint's name-keyed full state) translated to and from
    optimizer positions gives exactly what `optimizer.state_dict()` gives with one process, so
    checkpoints move between 1 process, DDP and FSDP. Run here on an unsharded model (no process
    group), where both paths exist; `tests/integration/test_fsdp.py` runs it sharded."""
    from tuneproof.train.checkpoint import gather_full_state, scatter_full_optimizer, scatter_full_weights

    def build() -> tuple[torch.nn.Module, torch.optim.Optimizer, list[str]]:
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
        model[0].bias.requires_grad = False  # frozen weights are not checkpointed (head, LoRA)
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        return model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1), names

    def step(model: torch.nn.Module, opt: torch.optim.Optimizer, seed: int) -> None:
        model(torch.randn(5, 3, generator=torch.Generator().manual_seed(seed))).sum().backward()
        opt.step()
        opt.zero_grad()

    model, opt, names = build()
    step(model, opt, 1)
    full = gather_full_state(model, opt, names)
    assert full is not None
    weights, optim = full
    assert list(weights) == names == ["0.weight", "1.weight", "1.bias"]
    ref = opt.state_dict()
    assert optim["param_groups"] == ref["param_groups"]
    assert all(torch.equal(optim["state"][i][k], v) for i, s in ref["state"].items() for k, v in s.items())

    path = save_checkpoint(tmp_path, 1, CheckpointContents(weights, optim, {}, torch.get_rng_state(), {}))
    back = load_checkpoint(path)
    fresh, fresh_opt, _ = build()
    scatter_full_weights(fresh, back.model)
    scatter_full_optimizer(fresh, fresh_opt, back.optimizer, names)
    step(model, opt, 2)
    step(fresh, fresh_opt, 2)
    after, restored = model.state_dict(), fresh.state_dict()
    assert all(torch.equal(after[k], restored[k]) for k in after)  # the next step is bit-identical
