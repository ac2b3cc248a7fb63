"""Stop and resume from the workbench's routes: SIGTERM makes the loop checkpoint and the run end
`interrupted`; resuming it through the UI finishes the same run folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from helpers_ui import make_project

from tuneproof.ui import jobs
from tuneproof.ui.app import create_ui_app

pytestmark = pytest.mark.integration
H = {"X-Tuneproof-UI": "1"}


def test_stop_checkpoints_and_resume_finishes_the_same_run(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", rows=200)
    proto = {
        "name": "long",
        "model": {"source": "tiny-bert", "max_length": 32},
        "data": {"files": ["reviews.csv"], "labels": ["neg", "pos"], "metadata_columns": ["genre"]},
        "split": {"train": 0.7, "validation": 0.15, "test": 0.15},
        # Enough steps that the stop lands inside training, checkpointing often so resume has one.
        "train": {"epochs": 60, "batch_size": 4, "precision": "fp32", "checkpoint_every_steps": 5},
        "evaluate": {"bootstrap_samples": 200},
    }
    (project / "long.yaml").write_text(yaml.safe_dump(proto))
    client = TestClient(create_ui_app(project), base_url="http://127.0.0.1")
    job_id = client.post("/api/runs/start", json={"protocol": "long.yaml"}, headers=H).json()["job"]
    job = jobs.find_job(project, job_id)
    assert job is not None
    p = jobs.progress(project, job)
    for _ in range(240):  # bounded: until training has taken a few steps (or 120 s)
        p = jobs.progress(project, job)
        if (p["step"] or 0) >= 6 or p["status"] not in ("running", "starting"):
            break
        jobs.time.sleep(0.5)
    assert p["status"] == "running" and p["stage"] == "train", p["log_tail"]
    assert p["total_steps"] > p["step"] and p["eta"]
    assert client.post(f"/api/jobs/{job_id}/stop", headers=H).json() == {"stopped": True}
    stopped = jobs.wait_for(project, job, {"interrupted", "failed", "stopped"}, timeout_s=60)
    assert stopped["status"] == "interrupted", stopped["log_tail"]
    run_dir = stopped["run_dir"]
    assert any((project / run_dir / "checkpoints").glob("checkpoint-*/checkpoint.json"))

    # Resume through the UI: the same run folder trains on from its checkpoint.
    resumed_id = client.post("/api/runs/resume", json={"run": run_dir}, headers=H).json()["job"]
    resumed = jobs.find_job(project, resumed_id)
    assert resumed is not None
    for _ in range(240):
        r = jobs.progress(project, resumed)
        if (r["step"] or 0) > stopped["step"] or r["status"] not in ("running", "starting"):
            break
        jobs.time.sleep(0.5)
    assert r["status"] == "running" and r["step"] > stopped["step"], r["log_tail"]
    manifest = json.loads((project / run_dir / "manifest.json").read_text())
    assert manifest["status"] == "running" and manifest.get("resumed_at")
    jobs.stop(resumed)
    final = jobs.wait_for(project, resumed, {"interrupted", "failed", "stopped"}, timeout_s=60)
    assert final["status"] == "interrupted" and final["run_dir"] == run_dir
