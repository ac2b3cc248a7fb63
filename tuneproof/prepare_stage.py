"""`tuneproof prepare`: the data stage alone, written as a run folder's data part.

A person checks the data (what was removed and why, the splits, the leakage) and a benchmark times
the stage before any model is trained. The folder holds what ``tuneproof run`` writes for the data
stage (``data/{split}.parquet``, ``data_report.json``, ``protocol.yaml``, ``protocol.source.yaml``)
plus ``prepared.json`` with the hashes; it is written under a temporary name and renamed when
complete, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuneproof import __version__
from tuneproof.context import build_context
from tuneproof.data.prepare import PreparedData, write_splits
from tuneproof.fsutil import atomic_write_json, atomic_write_text
from tuneproof.protocol import dump_protocol, load_protocol
from tuneproof.runner import runs_root


@dataclass
class PrepareOutcome:
    folder: Path
    prepared: PreparedData
    seconds: float


def prepare(protocol_path: Path, output_dir: Path | None = None) -> PrepareOutcome:
    """Run the data stage of ``protocol_path``; write ``<output_dir>/<name>-prepared-<time>/``.

    Raises the data stage's own errors (DataValidationError, exit 3; ProtocolError, exit 2)."""
    loaded = load_protocol(protocol_path)
    ctx = build_context(loaded, loaded.base_dir, None)
    start = time.perf_counter()
    prepared = ctx.prepare()
    seconds = time.perf_counter() - start
    root = runs_root(ctx.protocol, loaded.base_dir, output_dir)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = root / f"{ctx.protocol.name}-prepared-{stamp}"
    i = 1
    while folder.exists():
        i += 1
        folder = root / f"{ctx.protocol.name}-prepared-{stamp}-{i}"
    partial = folder.with_name(folder.name + ".partial")
    partial.mkdir(parents=True)
    try:
        atomic_write_text(partial / "protocol.yaml", dump_protocol(ctx.protocol))
        atomic_write_text(partial / "protocol.source.yaml", loaded.text)
        write_splits(prepared, partial / "data")
        atomic_write_json(partial / "data_report.json", prepared.report)
        atomic_write_json(partial / "prepared.json", _summary(loaded.sha256, prepared, seconds))
        partial.rename(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return PrepareOutcome(folder, prepared, seconds)


def _summary(protocol_sha256: str, prepared: PreparedData, seconds: float) -> dict[str, Any]:
    return {
        "tuneproof_version": __version__,
        "protocol_sha256": protocol_sha256,
        "inputs": prepared.input_hashes,
        "splits": {k: v["sha256"] for k, v in prepared.report["splits"].items()},
        "rows": {k: v["rows"] for k, v in prepared.report["splits"].items()},
        "seconds": round(seconds, 3),
    }
