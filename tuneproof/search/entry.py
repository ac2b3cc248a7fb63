"""Where a search meets the rest of tuneproof: the runner's search step, and `tuneproof search-worker`.

The runner calls :func:`lead_search` after the data stage and before training; it returns the
chosen protocol, which then goes through the normal train -> evaluate -> gates -> package path, so
the final model and the single read of the test split are exactly those of ``tuneproof run`` on
``search/chosen-protocol.yaml``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from tuneproof.context import RunContext, build_context
from tuneproof.data.prepare import PreparedData
from tuneproof.evidence import Manifest, SearchRecord
from tuneproof.protocol.loader import validation_context
from tuneproof.search.freeze import frozen_protocol_text
from tuneproof.search.space import with_params
from tuneproof.search.study import (
    CHOSEN_FILE,
    SEARCH_DIR,
    SearchError,
    TrialContext,
    default_study_name,
    direction_for,
    load_finished,
    mask_url,
    open_study,
    run_search,
    run_trials,
    search_metric,
    storage_url,
)


def trial_context(
    ctx: RunContext, prepared: PreparedData, scratch: Path, log: Callable[[str], None]
) -> TrialContext:
    from tuneproof.train.fit import build_features

    ctx.task.set_labels(prepared)  # from the train split only
    # Only train and validation are tokenised: the test split stays closed until the search is over.
    splits = {k: v for k, v in prepared.splits.items() if k in ("train", "validation")}
    features = build_features(ctx.task, splits, ctx.tokenizer, ctx.cache_dir)
    metric = search_metric(ctx.protocol, ctx.task)
    assert ctx.protocol.search is not None, "a trial context needs a protocol with a search section"
    return TrialContext(
        ctx.protocol,
        ctx.task,
        ctx.ref,
        ctx.tokenizer,
        features,
        ctx.precision,
        scratch,
        metric,
        direction_for(ctx.protocol.search, metric),
        log,
    )


def lead_search(
    run: RunContext,
    prepared: PreparedData,
    run_dir: Path,
    manifest: Manifest,
    log: Callable[[str], None],
    workers: int = 1,
) -> RunContext:
    """Run (or finish, or skip if already done) the search; return the context of the chosen protocol."""
    from tuneproof.export.manifest import write_manifest
    from tuneproof.fsutil import atomic_write_text
    from tuneproof.protocol import dump_protocol
    from tuneproof.tasks.registry import get_task
    from tuneproof.train.distributed import world_size

    loaded, protocol = run.loaded, run.protocol
    spec = protocol.search
    assert spec is not None, "lead_search needs a protocol with a search section"
    # On resume the protocol is read from the run folder; its relative paths are the original folder's.
    base_dir = Path(manifest.protocol_dir or loaded.base_dir)
    if world_size() > 1:
        raise SearchError(
            "a search runs its trials as separate single-process workers, not as one data-parallel job: "
            "run it without torchrun/accelerate launch (`tuneproof run --processes N` starts N trial "
            "workers), then train search/chosen-protocol.yaml data-parallel if needed"
        )
    finished = load_finished(run_dir)
    if finished is not None:
        log(f"[search] already finished; continuing with trial {finished['best']['number']}'s configuration")
        chosen = with_params(protocol, finished["best"]["params"], validation_context())
    else:
        seed = spec.seed if spec.seed is not None else protocol.seed
        ctx = trial_context(run, prepared, run_dir / SEARCH_DIR / "trials", log)
        helpers = _spawn_local_workers(loaded.path, base_dir, ctx, run_dir, seed, workers - 1)
        try:
            outcome = run_search(ctx, run_dir, seed)
        finally:
            _stop_workers(helpers)
            shutil.rmtree(run_dir / SEARCH_DIR / "trials", ignore_errors=True)  # emptied trial by trial
        chosen = outcome.chosen
        best, metric = outcome.best, outcome.summary["metric"]
        header = [
            f"Chosen by the search of run {run_dir.name}: trial {best['number']}, "
            f"validation {metric} {best['value']:.4f}.",
            "Selected on the validation split only; re-runs this configuration without search:",
            f"  tuneproof run {run_dir / SEARCH_DIR / CHOSEN_FILE}",
        ]
        text = frozen_protocol_text(chosen, base_dir, header)
        atomic_write_text(run_dir / SEARCH_DIR / CHOSEN_FILE, text)
        manifest.record_search(
            SearchRecord(
                study_name=outcome.summary["study_name"],
                storage=outcome.summary["storage"],
                best_trial=best["number"],
                best_value=best["value"],
                metric=metric,
                trials=outcome.summary["trials"],
                finished_at=outcome.summary["finished_at"],
            )
        )
        write_manifest(run_dir, manifest, hash_files=False)
    # protocol.yaml says what produced the model: the chosen configuration, every default spelled
    # out. The protocol as written, search section included, stays in protocol.source.yaml.
    atomic_write_text(run_dir / "protocol.yaml", dump_protocol(chosen))
    return replace(run, protocol=chosen, task=get_task(chosen, run.task.env))


# -- extra local workers for `tuneproof run --processes N` on a protocol with a search -------------


def _spawn_local_workers(
    protocol_path: Path, base_dir: Path, ctx: TrialContext, run_dir: Path, seed: int, n: int
) -> list[subprocess.Popen[bytes]]:
    if n <= 0:
        return []
    import torch

    (run_dir / SEARCH_DIR).mkdir(parents=True, exist_ok=True)
    url = storage_url(ctx.spec, run_dir)
    name = ctx.spec.study_name or default_study_name(ctx.protocol)
    # Create the study (and queue the default trial) before the workers can race for it.
    from tuneproof.search.study import enqueue_default

    study = open_study(ctx.spec, url, name, seed, ctx.direction)
    if ctx.spec.include_default:
        enqueue_default(study, ctx.protocol, ctx.spec, ctx.log)
    threads = str(max(1, (os.cpu_count() or 1) // (n + 1)))
    torch.set_num_threads(int(threads))
    env = {**os.environ, "TUNEPROOF_THREADS": threads, "OMP_NUM_THREADS": threads}
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tuneproof",
                "search-worker",
                str(protocol_path),
                "--storage",
                url,
                "--study-name",
                name,
                "--seed",
                str(seed + 1 + i),
                "--base-dir",
                str(base_dir),
            ],
            env=env,
        )
        for i in range(n)
    ]


def _stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    # The budget is shared, so workers stop by themselves once it is spent; a leader that fails
    # must not leave them training, though.
    for p in procs:
        if p.poll() is None:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.terminate()
    for p in procs:
        try:
            p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()


# -- tuneproof search-worker ----------------------------------------------------------------------


def run_worker(
    protocol_path: Path,
    storage: str | None = None,
    study_name: str | None = None,
    cache_dir: Path | None = None,
    seed: int | None = None,
    base_dir: Path | None = None,
) -> dict[str, Any]:
    """Join a study and run trials until its budget is spent. Writes no run folder; never reads test."""
    from tuneproof.protocol import load_protocol

    loaded = load_protocol(protocol_path)
    protocol = loaded.protocol
    if protocol.search is None:
        raise SearchError(f"{protocol_path} has no search section")
    url = storage_url(protocol.search, None, storage)
    name = study_name or protocol.search.study_name or default_study_name(protocol)
    run = build_context(loaded, base_dir or loaded.base_dir, cache_dir)
    tag = f"[search-worker {os.getpid()}]"

    def log(message: str) -> None:
        print(message.replace("[search]", tag), file=sys.stderr, flush=True)

    log(f"{tag} preparing the data (trials use train and validation; test is never scored here)")
    prepared = run.prepare()
    base_seed = protocol.search.seed if protocol.search.seed is not None else protocol.seed
    # Each worker samples with its own seed, or parallel random/TPE workers would propose the same values.
    worker_seed = (
        seed
        if seed is not None
        else base_seed
        + 1
        + int(hashlib.sha256(f"{os.uname().nodename}:{os.getpid()}".encode()).hexdigest()[:6], 16)
    )
    with tempfile.TemporaryDirectory(prefix="tuneproof-trials-") as scratch:
        scratch_dir = Path(scratch)
        ctx = trial_context(run, prepared, scratch_dir, log)
        study = open_study(protocol.search, url, name, worker_seed, ctx.direction)
        from tuneproof.search.study import check_study

        check_study(study, ctx)
        log(f"{tag} joined study {name} in {mask_url(url)}")
        result = run_trials(study, ctx, leader=False)
    log(f"{tag} done: {result['trials_here']} trial(s) here; {result['stopped_because']}")
    return result
