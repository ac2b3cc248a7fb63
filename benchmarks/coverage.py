"""Coverage of the evaluation's 95% bootstrap intervals on synthetic predictions with known truth.

The full table behind docs/statistics.md (tests/unit/test_statistics.py runs a small version):

    PYTHONPATH=. .venv/bin/python benchmarks/coverage.py                 # 400 repetitions each
    PYTHONPATH=. .venv/bin/python benchmarks/coverage.py --repetitions 1000 --json out.json

Each row: a scenario (tuneproof.evaluate.coverage), how the bootstrap resampled (rows or
clusters), the interval method, and the share of intervals that contained the true value with its
binomial standard error. Seeds are fixed, so a rerun prints the same table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from tuneproof.evaluate.coverage import Method, Resampling, Scenario, coverage, true_value

SCENARIOS: tuple[tuple[Scenario, Resampling], ...] = (
    (Scenario("accuracy", 40, p=0.9), "row"),
    (Scenario("accuracy", 200), "row"),
    (Scenario("accuracy", 1000), "row"),
    (Scenario("macro_f1", 200, rare=0.05), "row"),
    (Scenario("macro_f1", 1000, rare=0.05), "row"),
    (Scenario("macro_f1", 400, rare=0.2), "row"),
    (Scenario("paired_difference", 100), "row"),
    (Scenario("paired_difference", 500), "row"),
    (Scenario("accuracy", 600, clusters=60), "row"),
    (Scenario("accuracy", 600, clusters=60), "cluster"),
    (Scenario("paired_difference", 600, clusters=60), "row"),
    (Scenario("paired_difference", 600, clusters=60), "cluster"),
    (Scenario("accuracy", 1500, clusters=50), "cluster"),
)
METHODS: tuple[Method, ...] = ("percentile", "bca")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repetitions", type=int, default=400)
    parser.add_argument("--samples", type=int, default=1000, help="bootstrap resamples per interval")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = []
    print(f"{'scenario':44} {'resampled':9} {'method':10} {'truth':>7} {'coverage':>8} {'s.e.':>6} {'s':>6}")
    for scenario, how in SCENARIOS:
        for method in METHODS:
            start = time.perf_counter()
            got = coverage(scenario, args.repetitions, how, samples=args.samples, seed=7, method=method)
            se = math.sqrt(got * (1 - got) / args.repetitions)
            row = {
                "scenario": scenario.name,
                "resampled": how,
                "method": method,
                "truth": true_value(scenario),
                "coverage": got,
                "se": se,
                "repetitions": args.repetitions,
                "seconds": time.perf_counter() - start,
            }
            rows.append(row)
            print(
                f"{scenario.name:44} {how:9} {method:10} {row['truth']:7.4f} {got:8.3f} {se:6.3f} "
                f"{row['seconds']:6.1f}",
                flush=True,
            )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
