"""tests/unit/test_federated_rounds.py and test_federated_secure.py need flwr importable, which the
main environment is not (flwr's pins conflict with the serving stack's; docs/federated.md). So those
modules skip under `.venv/bin/python -m pytest`, and this test runs them in the Flower environment
instead: without it, the round loop's tests (a round with too few answers, the site-alone gate, the
federation report, show and verify, and SecAgg+ rounds) would never run in CI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from federated_helpers import flower_python

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PYTHON = flower_python()


@pytest.mark.skipif(PYTHON is None, reason="no interpreter with flwr (set TUNEPROOF_FLOWER_PYTHON)")
def test_round_loop_tests_pass_in_the_flower_env(tmp_path: Path) -> None:
    assert PYTHON is not None
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [
            PYTHON,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rs",
            "tests/unit/test_federated_rounds.py",
            "tests/unit/test_federated_secure.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, tail
