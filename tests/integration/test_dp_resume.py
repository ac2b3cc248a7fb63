"""A DP-SGD run interrupted for real (SIGKILL while a checkpoint is written, SIGTERM mid-training)
and resumed ends where an uninterrupted run ends: the same losses and weights, and the accountant
continued rather than restarted, so the epsilon and manifest cover every step."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_faults import KILLER, losses, only_run, run_cli, weights_sha

from helpers import toy_reviews, write_jsonl, write_protocol

pytestmark = pytest.mark.integration

STEPS = 18  # 140 training rows, expected batch 16: 9 steps an epoch, 2 epochs
SIGMA = 1.1


def dp_protocol(tmp: Path, tiny_bert: Path) -> Path:
    data = write_jsonl(tmp / "reviews.jsonl", toy_reviews(200))
    p = write_protocol(tmp / "p.yaml", tiny_bert, data, epochs="2", gates="  - {metric: epsilon, max: 100}")
    text = p.read_text().replace("  batch_size: 16", "  batch_size: 16\n  checkpoint_every_steps: 3")
    text += (
        "split: {train: 0.7, validation: 0.1, test: 0.2}\n"
        f"privacy:\n  dp_sgd: {{noise_multiplier: {SIGMA}, delta: 1.0e-5, max_grad_norm: 1.0}}\n"
    )
    p.write_text(text)
    return p


def rdp_epsilon(q: float, steps: int) -> float:
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(SIGMA, q, steps)]
    return float(acc.get_epsilon(1e-5))


def dp_record(run: Path) -> dict[str, object]:
    return json.loads((run / "metrics.json").read_text())["privacy"]["dp_sgd"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    tmp = tmp_path_factory.mktemp("dp-straight")
    res = run_cli(["run", str(dp_protocol(tmp, tiny_bert))], tmp)
    assert res.returncode == 0, res.stderr[-2000:]
    return only_run(tmp)


def test_an_uninterrupted_dp_run_records_its_budget_in_the_manifest_and_card(straight: Path) -> None:
    rec = dp_record(straight)
    q = float(rec["sample_rate"])  # type: ignore[arg-type]
    assert rec["steps"] == STEPS and rec["accountant_history"] == [[SIGMA, q, STEPS]]
    manifest = json.loads((straight / "manifest.json").read_text())
    budget = manifest["privacy"]["dp_sgd"]
    assert budget["epsilon"] == pytest.approx(rdp_epsilon(q, STEPS), rel=1e-12)
    assert budget["noise_multiplier"] == SIGMA and budget["max_grad_norm"] == 1.0
    assert budget["delta"] == 1e-5 and budget["accountant"] == "rdp" and budget["steps"] == STEPS
    card = (straight / "model_card.md").read_text()
    assert (
        "## Privacy" in card and f"{budget['epsilon']:.3f}" in card and "| noise multiplier | 1.100 |" in card
    )
    assert (straight / "model" / "README.md").read_text() == card


def test_sigkill_during_a_dp_checkpoint_then_resume_continues_the_budget(
    straight: Path, tmp_path: Path, tiny_bert: Path
) -> None:
    p = dp_protocol(tmp_path, tiny_bert)
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
    assert (run / "checkpoints" / "checkpoint-6" / "checkpoint.json").is_file()
    saved = json.loads((run / "checkpoints" / "checkpoint-6" / "trainer_state.json").read_text())
    assert saved["accountant_history"][0][2] == 6  # the accountant's 6 steps went to disk with the weights

    resumed = run_cli(["run", "--resume", str(run)], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    summary = json.loads((run / "training" / "summary.json").read_text())
    assert summary["resumed_from"].endswith("checkpoint-6")
    rec = dp_record(run)
    # One history entry of 18 steps: had the accountant restarted, it would hold 12 (epsilon too low).
    assert rec["accountant_history"] == dp_record(straight)["accountant_history"]
    assert rec["epsilon"] == dp_record(straight)["epsilon"]
    assert json.loads((run / "manifest.json").read_text())["privacy"]["dp_sgd"]["epsilon"] == rec["epsilon"]
    # Same Poisson samples, same noise (the RNG is in the checkpoint): the same training.
    assert losses(run) == losses(straight)
    assert weights_sha(run) == weights_sha(straight)


def test_sigterm_stops_a_dp_run_with_a_checkpoint_and_a_rerun_finishes_it(
    straight: Path, tmp_path: Path, tiny_bert: Path
) -> None:
    p = dp_protocol(tmp_path, tiny_bert)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuneproof", "run", str(p)], cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 300
    for line in proc.stderr:  # the DP loop prints its first step at once
        if "[train] step" in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.stderr.read()
    assert proc.wait(timeout=300) == 130, rest[-2000:]
    assert "epsilon so far" in rest
    run = only_run(tmp_path)
    assert json.loads((run / "manifest.json").read_text())["status"] == "interrupted"
    stopped_at = max(
        int(c.parent.name.split("-")[1]) for c in (run / "checkpoints").glob("checkpoint-*/checkpoint.json")
    )
    assert 1 <= stopped_at < STEPS

    again = run_cli(["run", str(p)], tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming it" in again.stderr
    assert dp_record(run)["accountant_history"] == dp_record(straight)["accountant_history"]
    assert losses(run) == losses(straight)
    assert weights_sha(run) == weights_sha(straight)
