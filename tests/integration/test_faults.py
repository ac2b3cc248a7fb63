"""Fault tolerance through real processes: SIGKILL mid-checkpoint, SIGTERM, determinism, NaN."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import toy_reviews, write_jsonl, write_protocol

pytestmark = pytest.mark.integration

# Kills this process with SIGKILL while the checkpoint of step KILL_STEP is being written: after its
# tensors and JSON files, before checkpoint.json (the marker of a complete checkpoint).
KILLER = """
import os, signal, sys
import tuneproof.train.checkpoint as ck
kill_step = int(os.environ["KILL_STEP"])
original = ck.write_json_durable
def write(path, obj):
    if path.name == ck.MANIFEST and obj.get("step") == kill_step:
        os.kill(os.getpid(), signal.SIGKILL)
    original(path, obj)
ck.write_json_durable = write
from tuneproof.cli import main
sys.argv = ["tuneproof", *sys.argv[1:]]
main()
"""


def run_cli(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tuneproof", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
    )


def protocol(tmp: Path, tiny_bert: Path, seed: int = 7) -> Path:
    data = write_jsonl(tmp / "reviews.jsonl", toy_reviews(200))
    p = write_protocol(tmp / "p.yaml", tiny_bert, data, epochs="2", gates="  - {metric: accuracy, min: 0.0}")
    text = (
        p.read_text()
        .replace("seed: 7", f"seed: {seed}")
        .replace("  batch_size: 16", "  batch_size: 16\n  checkpoint_every_steps: 3")
    )
    p.write_text(text)
    return p


def only_run(tmp: Path) -> Path:
    runs = list((tmp / "runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def losses(run: Path) -> list[float]:
    return [e["loss"] for e in json.loads((run / "training" / "log_history.json").read_text()) if "loss" in e]


def weights_sha(run: Path) -> str:
    return hashlib.sha256((run / "model" / "model.safetensors").read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    tmp = tmp_path_factory.mktemp("straight")
    res = run_cli(["run", str(protocol(tmp, tiny_bert))], tmp)
    assert res.returncode == 0, res.stderr[-2000:]
    return only_run(tmp)


def test_sigkill_during_checkpoint_write_then_resume(straight: Path, tmp_path: Path, tiny_bert: Path) -> None:
    p = protocol(tmp_path, tiny_bert)
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, "run", str(p)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "KILL_STEP": "9"},
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run = only_run(tmp_path)
    ckpts = run / "checkpoints"
    assert (ckpts / "checkpoint-6" / "checkpoint.json").is_file()
    assert list(ckpts.glob(".tmp-checkpoint-9-*"))  # the half-written one is there, not renamed into place
    assert json.loads((run / "manifest.json").read_text())["status"] == "running"

    resumed = run_cli(["run", "--resume", str(run)], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "ignored incomplete checkpoints: .tmp-checkpoint-9" in resumed.stderr
    summary = json.loads((run / "training" / "summary.json").read_text())
    assert summary["resumed_from"].endswith("checkpoint-6")
    assert losses(run) == losses(straight)
    assert weights_sha(run) == weights_sha(straight)
    assert json.loads((run / "manifest.json").read_text())["status"] == "passed"


def test_sigterm_saves_a_checkpoint_and_plain_rerun_resumes(
    straight: Path, tmp_path: Path, tiny_bert: Path
) -> None:
    p = protocol(tmp_path, tiny_bert)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuneproof", "run", str(p)], cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 300
    for line in proc.stderr:  # wait until training has really started
        if "[train] step" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=300) == 130, rest[-2000:]
    run = only_run(tmp_path)
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert any((run / "checkpoints").glob("checkpoint-*/checkpoint.json"))

    again = run_cli(["run", str(p)], tmp_path)  # the same command picks the unfinished run up
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming it" in again.stderr
    assert only_run(tmp_path) == run
    assert losses(run) == losses(straight)
    assert weights_sha(run) == weights_sha(straight)


def test_two_fresh_processes_agree_and_another_seed_differs(
    straight: Path, tmp_path: Path, tiny_bert: Path
) -> None:
    (tmp_path / "same").mkdir()
    (tmp_path / "other").mkdir()
    same = run_cli(["run", str(protocol(tmp_path / "same", tiny_bert))], tmp_path / "same")
    assert same.returncode == 0, same.stderr[-2000:]
    run = only_run(tmp_path / "same")
    assert losses(run) == losses(straight)
    assert weights_sha(run) == weights_sha(straight)
    other = run_cli(["run", str(protocol(tmp_path / "other", tiny_bert, seed=8))], tmp_path / "other")
    assert other.returncode in (0, 4)
    assert weights_sha(only_run(tmp_path / "other")) != weights_sha(straight)
    env = json.loads((run / "manifest.json").read_text())["environment"]
    for key in ("torch", "transformers", "python", "platform", "threads"):
        assert env[key]
