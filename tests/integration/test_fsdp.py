"""FSDP (accelerate's FSDP2, gloo on CPU): 2 sharded processes reach the 1-process result, and resume.

Tolerance: as for DDP (`test_ddp.py`), the weights may differ only by float summation order. FSDP2
reduce-scatters (averages) gradient shards instead of all-reducing whole gradients, and the
gradient norm is summed shard by shard, so the rounding differs from one process; every tensor of
the packaged model must agree within 1e-5 and every logged loss and gradient norm within 1e-5
(measured: 1.6e-7 on the weights, 1.2e-7 on the losses, 3e-8 on the gradient norms, 1.6e-8 on the
validation losses; a 1-process resume of an FSDP checkpoint: 9.5e-8 and 6e-8). An FSDP run resumed
under FSDP repeats the same reductions in the same order, so it must equal the uninterrupted FSDP
run exactly (measured: it does). The protocol is `test_ddp.py`'s (dropout 0, so ranks draw no
random masks), stopped at step 25, with a validation and a checkpoint every 5 steps.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from test_ddp import _protocol  # the same protocol, so the two files measure the same thing

WEIGHT_TOLERANCE = 1e-5
LOSS_TOLERANCE = 1e-5
# Shard layer by layer (BERT declares no `_no_split_modules`), as a model too big for one device would.
FSDP_ENV = {"FSDP_TRANSFORMER_CLS_TO_WRAP": "BertLayer"}


def _env() -> dict[str, str]:
    return {**os.environ, "TUNEPROOF_THREADS": "1", "OMP_NUM_THREADS": "1", **FSDP_ENV}


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tuneproof", "run", *args]


def _fsdp_protocol(tmp: Path, tiny_bert: Path) -> Path:
    path = _protocol(tmp, tiny_bert)
    # 25 steps, validated every 5: the best validation is at step 20, so the best checkpoint is
    # loaded back (scattered into the shards) at the end, not just the last weights kept.
    extra = "max_steps: 25\n  eval_every_steps: 5\n  checkpoint_every_steps: 5"
    path.write_text(path.read_text().replace("epochs: 3", f"epochs: 3\n  {extra}"))
    return path


def _only_run(out: Path) -> Path:
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders  # one run folder, however many ranks
    return folders[0]


def _run(*args: str, out: Path) -> tuple[Path, str]:
    proc = subprocess.run(
        _cmd(*args, "--output-dir", str(out)), env=_env(), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return _only_run(out), proc.stderr


def _weights(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "model" / "model.safetensors"))


def _weight_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    # Attention key biases have a true gradient of zero: AdamW turns float noise into steps there
    # (see test_ddp.py); they stay tiny in both runs and are compared for that only.
    noise_only = {k for k in a if k.endswith("attention.self.key.bias")}
    assert all(float(w[k].abs().max()) < 1e-4 for w in (a, b) for k in noise_only)
    return max(float((a[k] - b[k]).abs().max()) for k in a if k not in noise_only)


def _steps(run: Path) -> list[dict[str, Any]]:
    return [e for e in json.loads((run / "training" / "log_history.json").read_text()) if "loss" in e]


@pytest.fixture(scope="module")
def runs(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The protocol, its uninterrupted 1-process run and its uninterrupted 2-process FSDP run."""
    tmp = tmp_path_factory.mktemp("fsdp")
    protocol = _fsdp_protocol(tmp, tiny_bert)
    with pytest.MonkeyPatch.context() as mp:  # module-scoped: the per-test cache fixture is not set yet
        mp.setenv("TUNEPROOF_CACHE", str(tmp / "cache"))
        one, _ = _run(str(protocol), out=tmp / "one")
        fsdp, err = _run(str(protocol), "--processes", "2", "--fsdp", out=tmp / "fsdp")
    return {"protocol": protocol, "one": one, "fsdp": fsdp, "fsdp_stderr": err}


@pytest.mark.integration
def test_fsdp_two_processes_match_one_process(runs: dict[str, Any]) -> None:
    one, two, err = runs["one"], runs["fsdp"], runs["fsdp_stderr"]
    # Really sharded, layer by layer (2 BertLayers, the input embeddings that accelerate shards on
    # their own, and the root), not a silent fallback to DDP.
    assert "FSDP2 over 2 processes: 4 sharded modules" in err

    m1, m2 = (json.loads((d / "manifest.json").read_text()) for d in (one, two))
    assert (m1["processes"], m1["distributed"]) == (1, "single")
    assert (m2["processes"], m2["distributed"]) == (2, "fsdp")
    assert m1["status"] == m2["status"] == "passed"

    diff = _weight_diff(_weights(one), _weights(two))
    assert diff <= WEIGHT_TOLERANCE, diff
    s1, s2 = _steps(one), _steps(two)
    assert len(s1) == len(s2) == 25
    for key in ("loss", "grad_norm"):  # the gradient norm is the global one, over both ranks' shards
        gap = max(abs(a[key] - b[key]) for a, b in zip(s1, s2, strict=True))
        assert gap <= LOSS_TOLERANCE, (key, gap)

    t1, t2 = (json.loads((d / "training" / "summary.json").read_text()) for d in (one, two))
    assert t1["best_step"] == t2["best_step"] == 20 and t1["real_tokens"] == t2["real_tokens"]
    assert t1["best_metric"] >= 0.7  # it learned: the weights compared have moved
    # Validation ran on the sharded model on both ranks; rank 0's numbers match one process.
    v1, v2 = (
        [e for e in json.loads((d / "training" / "log_history.json").read_text()) if "eval_loss" in e]
        for d in (one, two)
    )
    assert max(abs(a["eval_loss"] - b["eval_loss"]) for a, b in zip(v1, v2, strict=True)) <= LOSS_TOLERANCE
    # Rank 0 scored the test split with the gathered, unsharded model it packaged.
    a1, a2 = (json.loads((d / "metrics.json").read_text())["model"]["accuracy"]["value"] for d in (one, two))
    assert a1 == pytest.approx(a2, abs=1e-9)


@pytest.mark.integration
def test_fsdp_checkpoint_resumes_under_fsdp_and_in_one_process(runs: dict[str, Any], tmp_path: Path) -> None:
    """An FSDP run stopped by SIGINT and resumed under FSDP equals the uninterrupted FSDP run
    exactly; its checkpoint also resumes in one process (checkpoints hold full tensors in the
    1-process format, whatever wrote them) and reaches the 1-process run within the tolerance."""
    protocol, one = runs["protocol"], runs["one"]
    out = tmp_path / "cut"
    # Its own session, so the SIGINT reaches the launcher and both ranks, like Ctrl-C in a terminal.
    proc = subprocess.Popen(
        _cmd(str(protocol), "--output-dir", str(out), "--processes", "2", "--fsdp"),
        env=_env(),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not list(out.glob("*/*/checkpoint-*")):
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    cut = _only_run(out)
    assert json.loads((cut / "manifest.json").read_text())["status"] == "interrupted"
    ckpts = sorted(cut.glob("checkpoints/checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert ckpts and int(ckpts[-1].name.split("-")[1]) < 25

    copy = tmp_path / "cut-copy" / cut.name
    shutil.copytree(cut, copy)
    for run, extra in ((cut, ["--processes", "2", "--fsdp"]), (copy, [])):
        resumed = subprocess.run(
            _cmd("--resume", str(run), *extra), env=_env(), capture_output=True, text=True, timeout=600
        )
        assert resumed.returncode == 0, (extra, resumed.stderr[-3000:])
        summary = json.loads((run / "training" / "summary.json").read_text())
        assert summary["resumed_from"] and summary["steps"] == 25 and summary["best_step"] == 20, extra

    # Under FSDP: bit-identical to the uninterrupted FSDP run, every tensor and every logged loss.
    full, resumed_fsdp = _weights(runs["fsdp"]), _weights(cut)
    assert all(torch.equal(full[k], resumed_fsdp[k]) for k in full)
    assert [e["loss"] for e in _steps(runs["fsdp"])] == [e["loss"] for e in _steps(cut)]
    # In one process: the 1-process run up to float summation order (its first steps ran sharded).
    diff = _weight_diff(_weights(one), _weights(copy))
    assert diff <= WEIGHT_TOLERANCE, diff
    gap = max(abs(a["loss"] - b["loss"]) for a, b in zip(_steps(one), _steps(copy), strict=True))
    assert gap <= LOSS_TOLERANCE, gap
