"""Record the golden results of every example's small variant: tests/golden/golden.json.

Re-record ONLY when a change is MEANT to change results (a new default, a fixed metric, a new
variant), and say so in the commit message, with what changed and why. A refactor must never need
it: tests/integration/test_golden.py fails until the refactored code gives the recorded bits.

    PYTHONPATH=. .venv/bin/python scripts/record_golden.py              # all variants, this CPU
    PYTHONPATH=. .venv/bin/python scripts/record_golden.py --check      # compare only, write nothing

Every variant (tests/golden/variants.py) is run twice, each time through `python -m tuneproof run`
in a fresh process and a fresh work folder; the two records must be identical, bit for bit, or
nothing is written (a value that differs between two runs of the same code cannot be a golden; if it
is legitimately non-deterministic, add it with its reason to variants.NONDETERMINISTIC).

Weights' bits depend on the CPU's kernels, so records are keyed by the CPU signature
(variants.cpu_signature()); recording on a new machine adds its signature and keeps the others.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "golden"))

import variants as V

FORMAT = 1


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: only in one run" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += _differences(a[k], b[k], f"{path}.{k}" if path else k)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [
            d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _differences(x, y, f"{path}.{i}")
        ]
    return [] if a == b and type(a) is type(b) else [f"{path}: {a!r} != {b!r}"]


def _git(*args: str) -> str:
    res = subprocess.run(["git", *args], cwd=V.REPO_ROOT, capture_output=True, text=True)
    return res.stdout.strip()


def _code_version() -> dict[str, Any]:
    """Which code gave the results: the commit, the tree of tuneproof/ (the same tree across commits
    that only touch tests or docs) and whether tuneproof/ had uncommitted changes."""
    return {
        "commit": _git("rev-parse", "HEAD") or "unknown",
        "tuneproof_tree": _git("rev-parse", "HEAD:tuneproof") or "unknown",
        "tuneproof_uncommitted_changes": bool(_git("status", "--porcelain", "--", "tuneproof")),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="record twice and compare; write nothing")
    parser.add_argument("--variants", nargs="*", default=list(V.VARIANT_NAMES), choices=V.VARIANT_NAMES)
    parser.add_argument("--out", type=Path, default=V.GOLDEN_FILE)
    args = parser.parse_args(argv)
    names = tuple(args.variants)

    def log(msg: str) -> None:
        print(f"[golden] {msg}", file=sys.stderr, flush=True)

    records = []
    started = time.perf_counter()
    for attempt in (1, 2):
        with tempfile.TemporaryDirectory(prefix=f"golden-{attempt}-") as tmp:
            log(f"pass {attempt}: work folder {tmp}")
            records.append(V.record_all(Path(tmp), names, log=log))
    diffs = _differences(records[0], records[1])
    if diffs:
        log(f"NOT deterministic: {len(diffs)} values differ between two fresh runs; nothing written")
        for d in diffs[:50]:
            log(f"  {d}")
        return 1
    log(f"two fresh passes agree bit for bit ({time.perf_counter() - started:.0f} s)")
    if args.check:
        return 0

    signature = V.cpu_signature()
    golden: dict[str, Any] = json.loads(args.out.read_text()) if args.out.is_file() else {}
    by_signature = golden.get("signatures", {})
    entry = by_signature.get(signature, {"inputs_sha256": {}, "variants": {}})
    entry["inputs_sha256"] = records[0]["inputs_sha256"]
    entry["variants"].update(records[0]["variants"])
    entry["recorded_with"] = _code_version()
    by_signature[signature] = entry
    golden = {
        "format": FORMAT,
        "about": "tests/golden/variants.py defines the variants; scripts/record_golden.py writes this file; "
        "tests/integration/test_golden.py checks it",
        "nondeterministic_excluded": V.NONDETERMINISTIC,
        "other_cpu_abs_tolerance": V.FOREIGN_CPU_ABS_TOL,
        "signatures": dict(sorted(by_signature.items())),
    }
    args.out.write_text(json.dumps(golden, indent=1, sort_keys=False) + "\n")
    log(f"wrote {args.out} for CPU signature {signature!r} ({len(names)} variants)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
