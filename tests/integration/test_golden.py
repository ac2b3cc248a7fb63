"""Results must not change by accident: every example's small variant gives its recorded results.

Each variant (tests/golden/variants.py) is run through `python -m tuneproof run` in a fresh process
and compared with tests/golden/golden.json, written by scripts/record_golden.py:

- on a CPU whose signature (variants.cpu_signature()) was recorded: the SHA-256 of every packaged
  weights file and of the test predictions' values, and every recorded value exactly (==, same
  type), the prepared splits' hashes, the gate verdicts, the exit code and the status;
- on any other CPU: kernels round differently, so weights cannot match bit for bit; values must lie
  within variants.FOREIGN_CPU_ABS_TOL of the recorded ones and verdicts, splits and status must be
  equal; the weights-and-predictions test is skipped with a message naming the script that records
  this CPU.

Keys the code writes that the golden does not hold yet (a new field such as `schema_version`) are
allowed; every recorded key must still be there with its value.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from golden import variants as V

pytestmark = pytest.mark.integration

_RESULTS: dict[str, dict[str, Any]] = {}


class Golden:
    """The recorded entry for this CPU (exact) or, where none was recorded, the first one."""

    def __init__(self) -> None:
        self.signature = V.cpu_signature()
        signatures = json.loads(V.GOLDEN_FILE.read_text())["signatures"]
        self.exact = self.signature in signatures
        self.entry: dict[str, Any] = signatures[self.signature if self.exact else sorted(signatures)[0]]

    def same(self, recorded: Any, got: Any) -> bool:
        if self.exact:
            return recorded == got and type(recorded) is type(got)
        numbers = (int, float)
        if isinstance(recorded, numbers) and isinstance(got, numbers) and not isinstance(got, bool):
            return not isinstance(recorded, bool) and math.isclose(
                got, recorded, rel_tol=0, abs_tol=V.FOREIGN_CPU_ABS_TOL
            )
        return recorded == got

    def mismatches(self, recorded: dict[str, Any], got: dict[str, Any], where: str) -> list[str]:
        out = []
        for key, value in recorded.items():
            if key not in got:
                out.append(f"{where} {key}: recorded {value!r}, now missing")
            elif not self.same(value, got[key]):
                out.append(f"{where} {key}: recorded {value!r}, now {got[key]!r}")
        return out


@pytest.fixture(scope="module")
def golden() -> Golden:
    return Golden()


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    d = tmp_path_factory.mktemp("golden")
    return d, V.build_inputs(d)


def _result(name: str, work: tuple[Path, dict[str, str]]) -> dict[str, Any]:
    if name not in _RESULTS:  # one run per variant, shared by the tests below
        _RESULTS[name] = V.run_variant(V.variant(name), work[0], work[0] / "runs")
    return _RESULTS[name]


def test_every_example_has_a_recorded_variant(golden: Golden) -> None:
    # The shipped examples and the protocols that need a hub download (docs/protocols/).
    shipped = [
        *(V.REPO_ROOT / "examples").glob("*.yaml"),
        *(V.REPO_ROOT / "docs" / "protocols").glob("*.yaml"),
    ]
    examples = {p.relative_to(V.REPO_ROOT).as_posix() for p in shipped}
    assert examples == {v.example for v in V.VARIANTS}
    assert set(golden.entry["variants"]) == set(V.VARIANT_NAMES)


def test_inputs_are_the_recorded_ones(golden: Golden, work: tuple[Path, dict[str, str]]) -> None:
    """A changed helper (tiny model, data generator) is a change of the inputs, not of the code under
    test: said here, before any variant's comparison points at the wrong cause."""
    recorded = golden.entry["inputs_sha256"]
    # Data files do not depend on the CPU; the tiny models' random initial weights might.
    names = recorded if golden.exact else [k for k in recorded if not k.endswith(".safetensors")]
    assert {k: work[1].get(k) for k in names} == {k: recorded[k] for k in names}


@pytest.mark.parametrize("name", V.VARIANT_NAMES)
def test_results_are_the_recorded_ones(name: str, golden: Golden, work: tuple[Path, dict[str, str]]) -> None:
    ref, got = golden.entry["variants"][name], _result(name, work)
    assert (got["exit_code"], got["status"], got["deployable"]) == (
        ref["exit_code"],
        ref["status"],
        ref["deployable"],
    )
    assert got["splits_sha256"] == ref["splits_sha256"]
    assert got["gates"]["passed"] == ref["gates"]["passed"]
    assert [(g["gate"], g["kind"], g["passed"]) for g in got["gates"]["verdicts"]] == [
        (g["gate"], g["kind"], g["passed"]) for g in ref["gates"]["verdicts"]
    ]
    problems = [
        p
        for i, (r, g) in enumerate(zip(ref["gates"]["verdicts"], got["gates"]["verdicts"], strict=True))
        for p in golden.mismatches(r, g, f"gates.json verdict {i}")
    ]
    assert set(got["values"]) >= set(ref["values"]), "an evidence file is missing"
    for rel, values in ref["values"].items():
        problems += golden.mismatches(values, got["values"][rel], rel)
    tolerance = (
        "exactly"
        if golden.exact
        else f"within {V.FOREIGN_CPU_ABS_TOL} (CPU {golden.signature!r} not recorded)"
    )
    assert not problems, f"{len(problems)} values differ ({tolerance}):\n" + "\n".join(problems[:40])


@pytest.mark.parametrize("name", V.VARIANT_NAMES)
def test_weights_and_predictions_are_the_recorded_bits(
    name: str, golden: Golden, work: tuple[Path, dict[str, str]]
) -> None:
    if not golden.exact:
        pytest.skip(
            f"no golden weights for CPU signature {golden.signature!r}: run scripts/record_golden.py on this "
            "machine to record them (results were still compared within tolerance)"
        )
    got, ref = _result(name, work), golden.entry["variants"][name]
    assert got["weights_sha256"] == ref["weights_sha256"]
    assert got["predictions_sha256"] == ref["predictions_sha256"]
