"""Data-parallel training: 2 processes (gloo on CPU) reach the 1-process result with the same global batch.

Tolerance: weights may differ only by float summation order (each rank sums its half of a step,
then the halves are added), so every tensor of the packaged model must agree within 1e-5 and the
logged losses within 1e-5. Dropout is 0 in this protocol: with dropout each rank draws its own
masks, so runs are statistically, not numerically, equivalent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import toy_reviews, write_jsonl
from tuneproof.train.distributed import shard_step, step_seed

WEIGHT_TOLERANCE = 1e-5
LOSS_TOLERANCE = 1e-5


# -- the sharding rule (fast) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "batch", "world"), [(32, 16, 2), (5, 16, 2), (1, 16, 2), (33, 8, 3), (7, 1, 4)]
)
def test_shards_cover_the_step_once_with_equal_micro_batch_counts(n: int, batch: int, world: int) -> None:
    idx = np.arange(100, 100 + n)
    shards = [shard_step(idx, batch, world, r) for r in range(world)]
    counts = {len(micro) for micro, _ in shards}
    assert len(counts) == 1  # DDP needs the same number of backward passes on every rank
    live = np.concatenate([m for micro, flags in shards for m, ok in zip(micro, flags, strict=True) if ok])
    assert sorted(live.tolist()) == idx.tolist()
    # Stand-ins (rank without examples for a micro-batch) are real examples of the step, weighted 0.
    for micro, flags in shards:
        for m, ok in zip(micro, flags, strict=True):
            assert len(m) >= 1 and (ok or set(m.tolist()) <= set(idx.tolist()))
            assert len(m) <= max(1, -(-batch // world))


def test_dropout_seeds_differ_by_rank_and_step_and_repeat() -> None:
    seeds = {step_seed(7, s, r) for s in range(5) for r in range(3)}
    assert len(seeds) == 15 and step_seed(7, 2, 1) == step_seed(7, 2, 1)


# -- 1 process vs 2 processes through the CLI -----------------------------------------------------


def _protocol(tmp: Path, tiny_bert: Path) -> Path:
    data = write_jsonl(tmp / "reviews.jsonl", toy_reviews(400, seed=3))
    path = tmp / "ddp.yaml"
    path.write_text(f"""
name: ddp
seed: 11
model: {{source: {tiny_bert}, max_length: 32}}
data: {{files: [{data}], labels: [neg, pos]}}
train:
  epochs: 3
  batch_size: 16
  gradient_accumulation: 2      # global optimizer step: 32 examples, 16 per rank with 2 ranks
  learning_rate: 0.003
  scheduler: constant
  dropout: 0.0
  precision: fp32
evaluate: {{bootstrap_samples: 200, baselines: [majority]}}
tracking: {{tensorboard: false}}
""")
    return path


def _run(protocol: Path, out: Path, processes: int) -> Path:
    env = {**os.environ, "TUNEPROOF_THREADS": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "tuneproof", "run", str(protocol), "--output-dir", str(out)]
    if processes > 1:
        cmd += ["--processes", str(processes)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders  # one run folder, however many ranks
    return folders[0]


@pytest.mark.integration
def test_two_processes_match_one_process(tiny_bert: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    protocol = _protocol(tmp_path, tiny_bert)
    one = _run(protocol, tmp_path / "one", 1)
    two = _run(protocol, tmp_path / "two", 2)

    m1, m2 = (json.loads((d / "manifest.json").read_text()) for d in (one, two))
    assert (m1["processes"], m2["processes"]) == (1, 2)
    assert m1["status"] == m2["status"] == "passed"

    w1, w2 = (load_file(str(d / "model" / "model.safetensors")) for d in (one, two))
    assert w1.keys() == w2.keys()
    # Attention key biases have a true gradient of zero (softmax ignores a constant shift), so AdamW
    # turns float noise into full-size steps there; they stay tiny in both runs and are compared
    # for that only. Every other tensor must match within the tolerance.
    noise_only = {k for k in w1 if k.endswith("attention.self.key.bias")}
    assert all(float(w[k].abs().max()) < 1e-4 for w in (w1, w2) for k in noise_only)
    diff = max(float((w1[k] - w2[k]).abs().max()) for k in w1 if k not in noise_only)
    assert diff <= WEIGHT_TOLERANCE, diff

    h1, h2 = (json.loads((d / "training" / "log_history.json").read_text()) for d in (one, two))
    l1 = [e["loss"] for e in h1 if "loss" in e]
    l2 = [e["loss"] for e in h2 if "loss" in e]
    assert len(l1) == len(l2) == 30  # 320 train rows / 32 per step = 10 steps, x 3 epochs
    assert max(abs(a - b) for a, b in zip(l1, l2, strict=True)) <= LOSS_TOLERANCE

    s1, s2 = (json.loads((d / "training" / "summary.json").read_text()) for d in (one, two))
    assert s1["best_step"] == s2["best_step"] and s1["real_tokens"] == s2["real_tokens"]
    assert s1["best_metric"] >= 0.7  # it learned (0.33 at the start): the weights compared have moved
    t1, t2 = (json.loads((d / "metrics.json").read_text()) for d in (one, two))
    assert t1["model"]["accuracy"]["value"] == pytest.approx(t2["model"]["accuracy"]["value"], abs=1e-9)


@pytest.mark.integration
def test_two_process_run_interrupted_and_resumed_equals_uninterrupted(
    tiny_bert: Path, tmp_path: Path
) -> None:
    import signal
    import time

    from safetensors.torch import load_file

    protocol = _protocol(tmp_path, tiny_bert)
    text = protocol.read_text().replace("epochs: 3", "epochs: 12\n  checkpoint_every_steps: 10")
    protocol.write_text(text)
    full = _run(protocol, tmp_path / "full", 2)

    env = {**os.environ, "TUNEPROOF_THREADS": "1", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "cut"
    cmd = [
        sys.executable,
        "-m",
        "tuneproof",
        "run",
        str(protocol),
        "--output-dir",
        str(out),
        "--processes",
        "2",
    ]
    # Its own session, so the SIGINT reaches the launcher and both ranks, like Ctrl-C in a terminal.
    proc = subprocess.Popen(
        cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 600
    while (
        time.monotonic() < deadline
        and proc.poll() is None
        and not list(out.glob("*/checkpoints/checkpoint-*"))
    ):
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    cut = next(p for p in out.iterdir() if p.is_dir())
    assert json.loads((cut / "manifest.json").read_text())["status"] == "interrupted"

    resumed = subprocess.run(
        [sys.executable, "-m", "tuneproof", "run", "--resume", str(cut), "--processes", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((cut / "training" / "summary.json").read_text())
    assert summary["resumed_from"] and summary["steps"] == 120
    w_full, w_cut = (load_file(str(d / "model" / "model.safetensors")) for d in (full, cut))
    noise_only = {k for k in w_full if k.endswith("attention.self.key.bias")}
    diff = max(float((w_full[k] - w_cut[k]).abs().max()) for k in w_full if k not in noise_only)
    assert diff <= WEIGHT_TOLERANCE, diff
