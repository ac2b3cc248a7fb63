"""Three sites with skewed label mixes (non-IID), for the federated tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from helpers import toy_reviews, write_jsonl

SITES = ("north", "south", "east")


def flower_python() -> str | None:
    """The interpreter whose environment has flwr: $TUNEPROOF_FLOWER_PYTHON, else the repository's
    .venv-flower (scripts/setup.sh makes it), else this one if it has flwr."""
    layered = Path(__file__).resolve().parents[1] / ".venv-flower" / "bin" / "python"
    candidate = os.environ.get("TUNEPROOF_FLOWER_PYTHON") or (
        str(layered) if layered.exists() else sys.executable
    )
    if (
        not Path(candidate).exists()
        or shutil.which("flower-superlink", path=str(Path(candidate).parent)) is None
    ):
        return None
    ok = subprocess.run([candidate, "-c", "import flwr"], capture_output=True).returncode == 0
    return candidate if ok else None


def site_rows(n_per_site: int = 150, seed: int = 3) -> dict[str, list[dict[str, str]]]:
    """Each site gets its own rows; north leans positive, south negative, east is balanced."""
    rows = toy_reviews(n_per_site * 3 * 2, seed=seed)
    pos = [r for r in rows if r["label"] == "pos"]
    neg = [r for r in rows if r["label"] == "neg"]
    shares = {"north": 0.7, "south": 0.3, "east": 0.5}
    out: dict[str, list[dict[str, str]]] = {}
    for name, share in shares.items():
        k = round(n_per_site * share)
        out[name] = [pos.pop() for _ in range(k)] + [neg.pop() for _ in range(n_per_site - k)]
    return out


def write_federation(
    root: Path, model_dir: Path, rounds: int = 2, extra: str = "", n_per_site: int = 150
) -> tuple[Path, dict[str, list[dict[str, str]]]]:
    rows = site_rows(n_per_site)
    sites = []
    for name, site in rows.items():
        path = write_jsonl(_mk(root / "sites" / name / "data") / "reviews.jsonl", site)
        sites.append(f"    - {{name: {name}, files: [{path}]}}")
    protocol = root / "federated.yaml"
    protocol.write_text(
        f"""
name: tiny-federated
task: classification
seed: 7
model: {{source: {model_dir}, max_length: 32}}
data: {{labels: [neg, pos], metadata_columns: [genre]}}
split: {{train: 0.6, validation: 0.2, test: 0.2}}
train: {{epochs: 1, scheduler: constant, batch_size: 16, learning_rate: 0.003, precision: fp32}}
evaluate: {{bootstrap_samples: 200, baselines: [majority]}}
gates: [{{metric: accuracy, min: 0.3}}]
federated:
  rounds: {rounds}
  round_timeout: 150
  site_floor: [{{metric: accuracy, min: 0.2}}]
{extra}  sites:
"""
        + "\n".join(sites)
        + "\n"
    )
    return protocol, rows


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def leaked(rows: list[dict[str, str]], files: list[Path]) -> list[str]:
    """The files that contain any of these rows' texts (raw bytes, so Parquet and SQLite count)."""
    texts = [r["text"].encode() for r in rows]
    hits = []
    for path in files:
        data = path.read_bytes()
        if any(t in data for t in texts):
            hits.append(str(path))
    return hits
