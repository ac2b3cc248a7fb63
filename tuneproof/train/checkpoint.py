"""Crash-consistent checkpoints, in safetensors and JSON only (no pickle).

A checkpoint is written into a hidden temporary folder, every file is flushed to disk, a
``checkpoint.json`` listing each file's SHA-256 is written last, and only then is the folder renamed
into place. A folder without ``checkpoint.json``, or whose hashes do not match, is incomplete: it is
reported and never loaded.

Hand-written because transformers' Trainer writes checkpoints in place (a kill leaves a
half-written folder that `get_last_checkpoint` picks) and stores optimizer and RNG state as pickles.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from tuneproof.fsutil import fsync_dir, sha256_file

MANIFEST = "checkpoint.json"
PREFIX = "checkpoint-"


def write_json_durable(path: Path, obj: Any) -> None:
    with path.open("w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())


def _save_tensors_durable(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(path))
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def optimizer_to_flat(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (for safetensors) and the rest (for JSON)."""
    tensors: dict[str, torch.Tensor] = {}
    rest: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for pid, pstate in state["state"].items():
        rest["state"][str(pid)] = {}
        for name, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{pid}.{name}"] = value
                rest["state"][str(pid)][name] = {"tensor": f"{pid}.{name}"}
            else:
                rest["state"][str(pid)][name] = {"value": value}
    return tensors, rest


def optimizer_from_flat(tensors: dict[str, torch.Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for pid, pstate in rest["state"].items():
        state[int(pid)] = {
            name: tensors[v["tensor"]] if "tensor" in v else v["value"] for name, v in pstate.items()
        }
    # JSON has no tuples; torch optimizers keep ``betas`` as one, so restore it exactly.
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in rest["param_groups"]]
    return {"state": state, "param_groups": groups}


# -- full state of a sharded (FSDP2) model, in the same format as one process writes -----------------
#
# A checkpoint holds full tensors and numbers optimizer state by parameter position, as
# `optimizer.state_dict()` does with one process or DDP, so checkpoints move freely between 1
# process, DDP and FSDP. `torch.distributed.checkpoint.state_dict` gathers shards into full tensors
# (and scatters them back), keyed by parameter name; `names` (the trainable parameters in optimizer
# order) translates between names and positions.


def _full_options(cpu_offload: bool = False, strict: bool = True) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload, strict=strict)


def gather_full_state(
    model: torch.nn.Module, optimizer: Any, names: list[str]
) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """Full trainable weights and optimizer state; a collective: every rank calls it, rank 0 gets them."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    opts = _full_options(cpu_offload=True)
    weights: dict[str, Any] = get_model_state_dict(model, options=opts)
    optim: dict[str, Any] = get_optimizer_state_dict(model, optimizer, options=opts)
    if not weights:  # cpu_offload leaves the other ranks empty-handed
        return None
    position = {name: i for i, name in enumerate(names)}
    return {n: weights[n] for n in names}, {
        "state": {position[n]: v for n, v in optim["state"].items()},
        "param_groups": [{**g, "params": [position[n] for n in g["params"]]} for g in optim["param_groups"]],
    }


def gather_full_model(model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
    """The whole unsharded state dict (frozen weights and buffers too) on rank 0, for packaging."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    weights: dict[str, Any] = get_model_state_dict(model, options=_full_options(cpu_offload=True))
    return weights or None


def scatter_full_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Load full trainable weights into a sharded model; every rank passes the full tensors."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    # strict=False: a checkpoint holds only the trainable weights; the caller checks none is missing.
    full: dict[str, Any] = dict(weights)
    set_model_state_dict(model, full, options=_full_options(strict=False))


def scatter_full_optimizer(
    model: torch.nn.Module, optimizer: Any, state: dict[str, Any], names: list[str]
) -> None:
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    by_name: dict[str, Any] = {
        "state": {names[int(i)]: v for i, v in state["state"].items()},
        "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]],
    }
    set_optimizer_state_dict(model, optimizer, by_name, options=_full_options())


@dataclass
class CheckpointContents:
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    rng: torch.Tensor
    state: dict[str, Any]


def save_checkpoint(root: Path, step: int, contents: CheckpointContents) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step}"
    tmp = root / f".tmp-{PREFIX}{step}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    _save_tensors_durable(tmp / "model.safetensors", contents.model)
    opt_tensors, opt_rest = optimizer_to_flat(contents.optimizer)
    _save_tensors_durable(tmp / "optimizer.safetensors", opt_tensors)
    write_json_durable(tmp / "optimizer.json", opt_rest)
    write_json_durable(tmp / "scheduler.json", contents.scheduler)
    _save_tensors_durable(tmp / "rng.safetensors", {"torch_cpu": contents.rng})
    write_json_durable(tmp / "trainer_state.json", contents.state)
    files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
    write_json_durable(tmp / MANIFEST, {"step": step, "files": files})
    fsync_dir(tmp)
    if final.exists():  # a checkpoint of the same step from an earlier, resumed attempt
        shutil.rmtree(final)
    os.replace(tmp, final)
    fsync_dir(root)
    return final


def is_complete(path: Path) -> tuple[bool, str]:
    manifest = path / MANIFEST
    if not manifest.is_file():
        return False, "no checkpoint.json (interrupted while writing)"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError) as exc:
        return False, f"unreadable checkpoint.json: {exc}"
    for name, digest in files.items():
        f = path / name
        if not f.is_file():
            return False, f"{name} is missing"
        if sha256_file(f) != digest:
            return False, f"{name} does not match its hash"
    return True, ""


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    out = []
    if root.is_dir():
        for p in root.iterdir():
            if p.is_dir() and p.name.startswith(PREFIX) and p.name[len(PREFIX) :].isdigit():
                out.append((int(p.name[len(PREFIX) :]), p))
    return sorted(out)


def latest_complete(root: Path) -> tuple[Path | None, list[str]]:
    """The newest complete checkpoint, and a note for every newer one that was skipped."""
    skipped: list[str] = []
    if root.is_dir():
        skipped += [
            f"{p.name}: temporary folder of an interrupted write" for p in root.glob(f".tmp-{PREFIX}*")
        ]
    for _step, path in reversed(list_checkpoints(root)):
        ok, why = is_complete(path)
        if ok:
            return path, skipped
        skipped.append(f"{path.name}: {why}")
    return None, skipped


def load_checkpoint(path: Path) -> CheckpointContents:
    ok, why = is_complete(path)
    if not ok:
        raise ValueError(f"checkpoint {path} is incomplete: {why}")
    opt_rest = json.loads((path / "optimizer.json").read_text())
    return CheckpointContents(
        model=load_file(str(path / "model.safetensors")),
        optimizer=optimizer_from_flat(load_file(str(path / "optimizer.safetensors")), opt_rest),
        scheduler=json.loads((path / "scheduler.json").read_text()),
        rng=load_file(str(path / "rng.safetensors"))["torch_cpu"],
        state=json.loads((path / "trainer_state.json").read_text()),
    )


def rotate(root: Path, keep: int, protect: set[int]) -> None:
    """Delete all but the newest ``keep`` checkpoints, never those in ``protect`` (the best one)."""
    ckpts = list_checkpoints(root)
    for step, path in ckpts[: max(0, len(ckpts) - keep)]:
        if step not in protect:
            shutil.rmtree(path, ignore_errors=True)
    for tmp in root.glob(f".tmp-{PREFIX}*"):
        shutil.rmtree(tmp, ignore_errors=True)
