from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Tests never reach a hub, and stay on one thread each so parallel work on 2 cores stays predictable.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TUNEPROOF_THREADS", "1")

from helpers import toy_reviews, write_jsonl, write_protocol, write_tiny_bert


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path_factory.getbasetemp() / "tuneproof-cache"
    monkeypatch.setenv("TUNEPROOF_CACHE", str(cache))
    import tuneproof.train.features as features

    monkeypatch.setattr(features, "DEFAULT_CACHE", cache)


@pytest.fixture
def toy_protocol(tmp_path: Path, tiny_bert: Path) -> Path:
    data = write_jsonl(tmp_path / "reviews.jsonl", toy_reviews(400))
    return write_protocol(tmp_path / "protocol.yaml", tiny_bert, data)


MONITOR_PROTOCOL = """
name: tiny-monitor
task: classification
seed: 7
model: {{source: {model}, max_length: 32}}
data: {{files: [{data}], labels: [neg, pos]}}
split: {{train: 0.5, validation: 0.1, test: 0.4}}
train: {{epochs: 4, scheduler: constant, batch_size: 16, learning_rate: 0.003, precision: fp32}}
evaluate: {{bootstrap_samples: 200}}
gates:
  - {{metric: accuracy, min: 0.6}}
monitor: {{window: 150, permutations: 100, bootstrap_samples: 300}}
"""


@pytest.fixture(scope="session")
def monitor_run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """One packaged, passing run with a 240-row reference, shared by the monitor and serve-drift tests
    (packaging is the slow part; every test only reads the run or writes under its monitoring/)."""
    d = tmp_path_factory.mktemp("monitor-run")
    data = write_jsonl(d / "reviews.jsonl", toy_reviews(600, seed=1))
    proto = d / "protocol.yaml"
    proto.write_text(MONITOR_PROTOCOL.format(model=tiny_bert, data=data))
    res = subprocess.run(
        [sys.executable, "-m", "tuneproof", "run", str(proto)],
        cwd=d,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return Path(res.stdout.strip().splitlines()[-1])
