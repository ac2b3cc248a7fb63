"""The privacy-utility benchmark's table: one row per arm, intervals as written, the DP time cost as
a ratio to the arm without DP."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2]))

from benchmarks.privacy_utility import table


def _arm(name: str, eps: float | None, seconds: float, cpu: float | None = None) -> dict[str, object]:
    iv = {"value": 0.8, "low": 0.75, "high": 0.85}
    return {
        "arm": name,
        "target_epsilon": eps,
        "epsilon": None if eps is None else eps - 0.01,
        "noise_multiplier": None if eps is None else 1.19,
        "steps": 20,
        "macro_f1": iv,
        "accuracy": {"value": 0.81, "low": 0.76, "high": 0.86},
        "macro_f1_minus_majority": {"value": 0.3, "low": 0.25, "high": 0.35},
        "membership_auc": {"value": 0.51, "low": 0.46, "high": 0.56},
        "train_seconds": seconds,
        "train_cpu_seconds": cpu,
    }


def test_table_has_a_row_per_arm_and_the_time_ratio_to_no_dp() -> None:
    text = table([_arm("no-dp", None, 100.0, 160.0), _arm("dp-eps3", 3.0, 250.0, 480.0)])
    lines = text.splitlines()
    assert len(lines) == 4
    assert lines[2].startswith("| no-dp | — | — | 20 | 0.800 [0.750, 0.850] |") and lines[2].endswith(
        "| 100 | 1.00 | 160 | 1.00 |"
    )
    assert "| 0.800 [0.750, 0.850] | 0.810 [0.760, 0.860] | 0.300 [0.250, 0.350] |" in lines[2]
    assert "| dp-eps3 | 2.99 | 1.19 |" in lines[3] and "0.510 [0.460, 0.560]" in lines[3]
    assert lines[3].endswith("| 250 | 2.50 | 480 | 3.00 |")


def test_without_a_no_dp_arm_there_is_no_ratio() -> None:
    assert table([_arm("dp-eps1", 1.0, 50.0)]).splitlines()[2].endswith("| 50 | — | — | — |")
