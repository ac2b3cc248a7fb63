"""Runs started from the UI: `tuneproof run` as a child process in its own session.

The process is started with ``start_new_session`` and its output goes to a log file, so closing the
browser or stopping the UI (Ctrl-C reaches only the UI's process group) never stops or stalls
training. Progress is read back from the log (the runner's `[stage]` lines and the loop's
`[train] step ...` lines) and from the run folder (manifest status, training curves). Stop sends
SIGTERM: the loop checkpoints and the manifest says `interrupted`; resume is `run --resume`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuneproof.fsutil import atomic_write_json

JOBS = ".tuneproof-ui/jobs"
_STEP = re.compile(
    r"^\[train\] step (\d+)/(\d+) epoch ([\d.]+) loss ([-\d.eE+naif]+) \| ([\d.]+) steps/s \| ETA (\S+)"
)
_STAGE = re.compile(r"^\[(\w+)\] (.*)$")
_RUN_DIR = re.compile(r"^\[(?:done|resume)\] .*?(/\S+)$")
_children: dict[str, subprocess.Popen[bytes]] = {}  # reaped on each status read


@dataclass
class Job:
    id: str
    folder: Path
    pid: int
    protocol: str | None
    resume: str | None
    started_at: str

    @classmethod
    def read(cls, folder: Path) -> Job:
        raw = json.loads((folder / "job.json").read_text(encoding="utf-8"))
        return cls(raw["id"], folder, raw["pid"], raw.get("protocol"), raw.get("resume"), raw["started_at"])

    @property
    def log(self) -> Path:
        return self.folder / "log.txt"


def jobs_dir(project: Path) -> Path:
    return project / JOBS


def start(project: Path, protocol: Path | None = None, resume: Path | None = None) -> Job:
    """Start ``tuneproof run PROTOCOL`` (or ``--resume RUN``) in the background; returns at once."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    job_id = f"{stamp}-{secrets.token_hex(3)}"
    folder = jobs_dir(project) / job_id
    folder.mkdir(parents=True)
    args = ["run", str(protocol)] if protocol is not None else ["run", "--resume", str(resume)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (folder / "log.txt").open("wb") as log:
        proc = subprocess.Popen(  # our own CLI; the arguments are confined paths
            [sys.executable, "-m", "tuneproof", *args],
            cwd=project,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own session: no terminal signal or browser reaches it
            env=env,
        )
    _children[job_id] = proc
    job = Job(
        job_id,
        folder,
        proc.pid,
        str(protocol) if protocol else None,
        str(resume) if resume else None,
        datetime.now(UTC).isoformat(),
    )
    atomic_write_json(
        folder / "job.json",
        {
            "id": job.id,
            "pid": job.pid,
            "protocol": job.protocol,
            "resume": job.resume,
            "started_at": job.started_at,
            "command": ["tuneproof", *args],
        },
    )
    return job


def alive(job: Job) -> bool:
    proc = _children.get(job.id)
    if proc is not None:
        return proc.poll() is None
    try:
        stat = Path(f"/proc/{job.pid}/stat").read_text()
    except OSError:
        try:
            os.kill(job.pid, 0)
        except OSError:
            return False
        return True
    # A pid can be reused: only our own command line counts as the job.
    try:
        cmd = Path(f"/proc/{job.pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return stat.split(") ", 1)[-1][:1] != "Z" and b"tuneproof" in cmd


def stop(job: Job) -> bool:
    """SIGTERM: the training loop saves a checkpoint and the run ends `interrupted` (exit 130)."""
    if not alive(job):
        return False
    os.kill(job.pid, signal.SIGTERM)
    return True


def list_jobs(project: Path) -> list[Job]:
    root = jobs_dir(project)
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(root.iterdir(), reverse=True):
        if (folder / "job.json").is_file():
            try:
                out.append(Job.read(folder))
            except (OSError, ValueError, KeyError):
                continue
    return out


def find_job(project: Path, job_id: str) -> Job | None:
    if not re.fullmatch(r"[0-9TZ]+-[0-9a-f]{6}", job_id):
        return None
    folder = jobs_dir(project) / job_id
    return Job.read(folder) if (folder / "job.json").is_file() else None


def progress(project: Path, job: Job) -> dict[str, Any]:
    """Stage, step, loss, ETA and status of a job, with its loss and validation curves."""
    lines = job.log.read_text(encoding="utf-8", errors="replace").splitlines() if job.log.is_file() else []
    out: dict[str, Any] = {
        "id": job.id,
        "protocol": job.protocol,
        "resume": job.resume,
        "started_at": job.started_at,
        "alive": alive(job),
        "stage": None,
        "message": None,
        "step": None,
        "total_steps": None,
        "loss": None,
        "eta": None,
        "rate": None,
        "run_dir": job.resume,
        "error": None,
        "log_tail": lines[-15:],
    }
    curve: list[tuple[int, float]] = []
    for line in lines:
        m = _STEP.match(line)
        if m:
            step, total = int(m[1]), int(m[2])
            out.update(
                stage="train", step=step, total_steps=total, loss=float(m[4]), rate=float(m[5]), eta=m[6]
            )
            out["message"] = line[len("[train] ") :]
            curve.append((step, float(m[4])))
            continue
        m = _RUN_DIR.match(line)
        if m:
            out["run_dir"] = m[1]
        m = _STAGE.match(line)
        if m:
            out["stage"], out["message"] = m[1], m[2]
        elif line.startswith("error: "):
            out["error"] = line[len("error: ") :]
    if out["run_dir"] is None:
        out["run_dir"] = _guess_run_dir(project, job)
    status = None
    if out["run_dir"]:
        run_dir = Path(out["run_dir"])
        status = _manifest_status(run_dir)
        out.update(_curves(run_dir, curve))
        out["run_dir"] = str(run_dir)
    else:
        out.update(train_curve=curve, validation_curve=[])
    if out["alive"]:
        out["status"] = "running"
    elif status in ("passed", "rejected", "failed", "interrupted"):
        out["status"] = status
    elif out["error"]:
        out["status"] = "failed"
    else:
        # Gone without a verdict (killed before the training loop could checkpoint, or before the run
        # folder existed): a manifest still saying `running` is resumable, like a crashed run.
        out["status"] = "stopped" if lines or status else "starting"
    if out["status"] in ("passed", "rejected"):
        out["stage"] = "done"
    return out


def _manifest_status(run_dir: Path) -> str | None:
    try:
        return str(json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))["status"])
    except (OSError, ValueError, KeyError):
        return None


def _guess_run_dir(project: Path, job: Job) -> str | None:
    """The run folder a fresh job created: the manifest naming its protocol, started after the job."""
    if job.protocol is None:
        return None
    from tuneproof.protocol import load_protocol
    from tuneproof.runner import runs_root

    try:
        loaded = load_protocol(
            Path(job.protocol) if Path(job.protocol).is_absolute() else project / job.protocol
        )
    except Exception:  # an unreadable protocol simply has no run folder yet
        return None
    root = runs_root(loaded.protocol, loaded.base_dir, None)
    started = datetime.fromisoformat(job.started_at).timestamp() - 1
    best: tuple[float, Path] | None = None
    for d in root.glob(f"{loaded.protocol.name}-*"):
        m = d / "manifest.json"
        if m.is_file() and m.stat().st_mtime >= started:
            try:
                raw = json.loads(m.read_text(encoding="utf-8"))
            except ValueError:
                continue
            if raw.get("protocol_path") == str(loaded.path) and (best is None or d.stat().st_mtime > best[0]):
                best = (d.stat().st_mtime, d)
    return str(best[1]) if best else None


def _curves(run_dir: Path, live: list[tuple[int, float]]) -> dict[str, Any]:
    """Loss and validation curves: the finished log when there is one, else what the run has so far."""
    history = run_dir / "training" / "log_history.json"
    if history.is_file():
        try:
            entries = json.loads(history.read_text(encoding="utf-8"))
        except ValueError:
            entries = []
        train = [(e["step"], e["loss"]) for e in entries if "loss" in e]
        val = [
            (e["step"], {k[5:]: v for k, v in e.items() if k.startswith("eval_")})
            for e in entries
            if any(k.startswith("eval_") for k in e)
        ]
        return {"train_curve": train, "validation_curve": val}
    return {"train_curve": live, "validation_curve": _tensorboard_validation(run_dir)}


def _tensorboard_validation(run_dir: Path) -> list[tuple[int, dict[str, float]]]:
    """Validation points written so far to the run's TensorBoard events (flushed every few seconds)."""
    folder = run_dir / "training" / "tensorboard"
    if not folder.is_dir():
        return []
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return []
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    points: dict[int, dict[str, float]] = {}
    for tag in acc.Tags().get("scalars", []):
        if tag.startswith("validation/"):
            for ev in acc.Scalars(tag):
                points.setdefault(ev.step, {})[tag.split("/", 1)[1]] = ev.value
    return sorted(points.items())


def wait_for(project: Path, job: Job, until: set[str], timeout_s: float) -> dict[str, Any]:
    """Poll a job's progress until its status is in ``until`` (for scripts and tests); bounded."""
    deadline = time.monotonic() + timeout_s
    while True:
        p = progress(project, job)
        if p["status"] in until or time.monotonic() > deadline:
            return p
        time.sleep(0.5)
