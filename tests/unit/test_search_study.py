"""The search loop on a stand-in trainer: budgets, pruning, failures, retries, workers, summaries.

``fit`` is replaced by a function of the trial's values that reports validation scores the way the
training loop does (through ``on_log``), so these tests exercise the Optuna side in milliseconds;
the real trainer is exercised in tests/integration/test_search_cli.py.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
import torch

from tuneproof.errors import Interrupted, SearchError, TrainingDiverged
from tuneproof.protocol import parse_protocol
from tuneproof.search import study as search_study
from tuneproof.search.study import (
    TrialContext,
    best_trial,
    check_study,
    counted_trials,
    enqueue_default,
    export_trials,
    open_study,
    run_trials,
    summarise,
)
from tuneproof.tasks.classification import ClassificationTask

BASE = """
name: s
seed: 3
model: {source: m}
data: {files: [d.jsonl], labels: [neg, pos]}
train: {learning_rate: 0.001, warmup_ratio: 0.0, eval_every_steps: 1}
"""


def protocol_with(search: str) -> Any:
    return parse_protocol(BASE + "search:\n" + "".join(f"  {line}\n" for line in search.strip().splitlines()))


def context(protocol: Any, tmp_path: Path) -> TrialContext:
    task = ClassificationTask(protocol)
    task.labels = ["neg", "pos"]
    features = {
        "train": [{"row_id": "t1", "input_ids": [1, 2], "labels": 0}],
        "validation": [{"row_id": "v1", "input_ids": [1, 3], "labels": 1}],
    }
    return TrialContext(
        protocol,
        task,
        None,
        None,
        features,
        "fp32",
        tmp_path / "scratch",
        "macro_f1",
        "maximize",
        log=lambda m: None,
    )


def score(lr: float) -> float:
    """Best near lr = 1e-3, in (0, 1)."""
    return 1.0 / (1.0 + abs(math.log10(lr) + 3.0))


class FakeFit:
    """Stands in for tuneproof.train.fit.fit: reports ``steps`` validations, then returns a result."""

    def __init__(self, steps: int = 3, sleep: float = 0.0, fail: Any = None) -> None:
        self.steps, self.sleep, self.fail = steps, sleep, fail
        self.calls: list[dict[str, Any]] = []

    def __call__(
        self,
        task: Any,
        protocol: Any,
        ref: Any,
        tokenizer: Any,
        features: Any,
        checkpoint_dir: Path,
        precision: str,
        resume: bool = False,
        on_log: Any = None,
    ) -> Any:
        assert set(features) == {"train", "validation"}  # the test split never reaches a trial
        lr = protocol.train.learning_rate
        self.calls.append({"lr": lr, "warmup": protocol.train.warmup_ratio, "search": protocol.search})
        if self.fail is not None:
            self.fail(protocol)
        time.sleep(self.sleep)
        history = []
        for step in range(1, self.steps + 1):
            entry = {"step": step, "epoch": step / self.steps, "eval_macro_f1": score(lr) * step / self.steps}
            history.append(entry)
            on_log(entry)
        train = SimpleNamespace(
            log_history=history, steps=self.steps, best_step=self.steps, stopped_early=False
        )
        return SimpleNamespace(model=None, train=train)


@pytest.fixture
def fake_fit(monkeypatch: pytest.MonkeyPatch) -> FakeFit:
    fake = FakeFit()
    monkeypatch.setattr("tuneproof.train.fit.fit", fake)
    return fake


@pytest.fixture
def tmp_path(tmp_path: Path) -> Iterator[Path]:
    """A RAM folder where there is one: creating an SQLite study on this disk costs seconds of fsync."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path
        return
    folder = Path(tempfile.mkdtemp(dir=shm, prefix="tuneproof-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def new_study(ctx: TrialContext, tmp_path: Path, seed: int = 0, name: str = "s") -> Any:
    return open_study(ctx.spec, f"sqlite:///{tmp_path / 'study.db'}", name, seed, ctx.direction)


LR_SPACE = "space: {train.learning_rate: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}}"


def test_trial_count_budget_default_first_then_stop(fake_fit: FakeFit, tmp_path: Path) -> None:
    p = protocol_with(f"sampler: random\n{LR_SPACE}\nbudget: {{trials: 4}}\npruner: {{type: none}}")
    ctx = context(p, tmp_path)
    study = new_study(ctx, tmp_path)
    enqueue_default(study, p, p.search, ctx.log)
    loop = run_trials(study, ctx, leader=True)
    trials = export_trials(study)
    assert len(trials) == 4 and loop["stopped_because"] == "trial budget reached (4)"
    assert trials[0]["default"] and trials[0]["params"] == {"train.learning_rate": 0.001}
    # Each trial trains the protocol with its own values and without the search section.
    assert [c["lr"] for c in fake_fit.calls] == [t["params"]["train.learning_rate"] for t in trials]
    assert all(c["search"] is None for c in fake_fit.calls)
    assert all(
        t["state"] == "complete" and t["value"] == pytest.approx(score(c["lr"]))
        for t, c in zip(trials, fake_fit.calls, strict=True)
    )


def test_budget_is_kept_across_a_restart_and_can_be_raised(fake_fit: FakeFit, tmp_path: Path) -> None:
    p = protocol_with(f"sampler: random\n{LR_SPACE}\nbudget: {{trials: 3}}\npruner: {{type: none}}")
    ctx = context(p, tmp_path)
    run_trials(new_study(ctx, tmp_path), ctx, leader=True)
    run_trials(new_study(ctx, tmp_path), ctx, leader=True)  # resumed: the budget is already spent
    assert len(fake_fit.calls) == 3
    more = protocol_with(f"sampler: random\n{LR_SPACE}\nbudget: {{trials: 5}}\npruner: {{type: none}}")
    ctx5 = context(more, tmp_path)
    run_trials(new_study(ctx5, tmp_path), ctx5, leader=True)
    assert len(fake_fit.calls) == 5
    assert [t["number"] for t in export_trials(new_study(ctx5, tmp_path))] == [0, 1, 2, 3, 4]


def test_wall_clock_budget_stops_new_trials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = FakeFit(sleep=0.3)
    monkeypatch.setattr("tuneproof.train.fit.fit", fake)
    p = protocol_with(f"sampler: random\n{LR_SPACE}\nbudget: {{minutes: 0.01}}\npruner: {{type: none}}")
    ctx = context(p, tmp_path)
    loop = run_trials(new_study(ctx, tmp_path), ctx, leader=True)
    assert 1 <= len(fake.calls) <= 3  # 0.6 s of budget, 0.3 s per trial; none starts after the deadline
    assert loop["stopped_because"] == "time budget reached (0.01 min)"


def test_failed_trials_are_recorded_with_why_and_the_search_goes_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def fail(protocol: Any) -> None:
        lr = protocol.train.learning_rate
        if lr > 0.05:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if lr < 1e-4:
            raise TrainingDiverged("non-finite loss (nan) at step 3; batch example ids: r1, r2")

    monkeypatch.setattr("tuneproof.train.fit.fit", FakeFit(fail=fail))
    space = "space: {train.learning_rate: {type: categorical, choices: [0.1, 1.0e-5, 0.001, 0.01]}}"
    p = protocol_with(f"sampler: grid\n{space}\npruner: {{type: none}}\ninclude_default: false")
    ctx = context(p, tmp_path)
    loop = run_trials(new_study(ctx, tmp_path), ctx, leader=True)
    rows = {t["params"]["train.learning_rate"]: t for t in export_trials(new_study(ctx, tmp_path))}
    assert loop["stopped_because"] == "trial budget reached (4)"  # a grid's size is its natural budget
    assert rows[0.1]["state"] == "fail" and rows[0.1]["reason"].startswith(
        "out of memory: CUDA out of memory"
    )
    assert rows[1e-5]["state"] == "fail"
    assert rows[1e-5]["reason"] == "diverged: non-finite loss (nan) at step 3; batch example ids: r1, r2"
    assert rows[0.001]["state"] == rows[0.01]["state"] == "complete"
    assert best_trial(new_study(ctx, tmp_path), "maximize").params == {"train.learning_rate": 0.001}


def test_non_finite_validation_fails_the_trial(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("tuneproof.train.fit.fit", FakeFit())
    monkeypatch.setitem(globals(), "score", lambda lr: float("nan"))
    p = protocol_with(f"sampler: random\n{LR_SPACE}\nbudget: {{trials: 1}}\npruner: {{type: none}}")
    ctx = context(p, tmp_path)
    run_trials(new_study(ctx, tmp_path), ctx, leader=True)
    (row,) = export_trials(new_study(ctx, tmp_path))
    assert row["state"] == "fail" and "not finite" in row["reason"]


def test_median_pruner_stops_poor_trials_and_says_why(fake_fit: FakeFit, tmp_path: Path) -> None:
    p = protocol_with(
        f"sampler: random\n{LR_SPACE}\nbudget: {{trials: 4}}\npruner: {{type: median, startup_trials: 2}}\n"
        "include_default: false"
    )
    ctx = context(p, tmp_path)
    study = new_study(ctx, tmp_path)
    for lr in (0.001, 0.002, 1e-5, 0.01):
        study.enqueue_trial({"train.learning_rate": lr})
    run_trials(study, ctx, leader=True)
    rows = export_trials(study)
    assert [t["state"] for t in rows] == ["complete", "complete", "pruned", "pruned"]
    for t in rows[2:]:
        # Pruned at its first report: worse than the median of the two complete trials at step 1.
        assert t["reason"].startswith("pruned at step 1 by the median pruner: validation macro_f1")
        assert "median 0.2948 of the 2 complete trials" in t["reason"]
        assert t["intermediate"] == {"1": pytest.approx(score(t["params"]["train.learning_rate"]) / 3)}


def test_hyperband_pruner_runs_and_reports(fake_fit: FakeFit, tmp_path: Path) -> None:
    fake_fit.steps = 9
    p = protocol_with(
        f"sampler: random\n{LR_SPACE}\nbudget: {{trials: 9}}\n"
        "pruner: {type: hyperband, min_resource: 1, reduction_factor: 3}\ninclude_default: false"
    )
    ctx = context(p, tmp_path)
    study = new_study(ctx, tmp_path)
    run_trials(study, ctx, leader=True)
    rows = export_trials(study)
    assert len(rows) == 9
    assert any(t["state"] == "pruned" for t in rows)
    assert all("by Hyperband" in t["reason"] for t in rows if t["state"] == "pruned")


def test_interrupted_trial_runs_again_and_is_counted_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls = {"n": 0}

    def fail(protocol: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise Interrupted("stopped by signal 2 after step 1")

    fake = FakeFit(fail=fail)
    monkeypatch.setattr("tuneproof.train.fit.fit", fake)
    p = protocol_with(f"sampler: random\n{LR_SPACE}\nbudget: {{trials: 3}}\npruner: {{type: none}}")
    ctx = context(p, tmp_path)
    with pytest.raises(Interrupted):
        run_trials(new_study(ctx, tmp_path), ctx, leader=True)
    run_trials(new_study(ctx, tmp_path), ctx, leader=True)  # the resumed search
    rows = export_trials(new_study(ctx, tmp_path))
    assert [t["state"] for t in rows] == ["complete", "fail", "complete", "complete"]
    assert rows[1]["reason"].startswith("interrupted")
    assert rows[2]["retry_of"] == 1 and rows[2]["params"] == rows[1]["params"]  # the same values, re-run
    assert counted_trials(new_study(ctx, tmp_path)) == 3


def test_two_workers_share_one_study_and_its_budget(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("tuneproof.train.fit.fit", FakeFit(sleep=0.2))
    monkeypatch.setattr(search_study, "worker_id", lambda: threading.current_thread().name)
    p = protocol_with(
        f"sampler: tpe\nstartup_trials: 2\n{LR_SPACE}\nbudget: {{trials: 8}}\npruner: {{type: none}}"
    )
    errors: list[BaseException] = []

    def worker(seed: int, leader: bool) -> None:
        try:
            ctx = context(p, tmp_path)
            run_trials(new_study(ctx, tmp_path, seed=seed), ctx, leader=leader, poll_s=0.1)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i, i == 0), name=f"w{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    rows = export_trials(new_study(context(p, tmp_path), tmp_path))
    assert 8 <= len(rows) <= 9  # two workers checking at the same moment may overshoot by one
    assert {r["worker"] for r in rows} == {"w0", "w1"}
    assert all(r["state"] == "complete" for r in rows)


def test_default_outside_the_space_is_not_run(fake_fit: FakeFit, tmp_path: Path) -> None:
    p = protocol_with(
        "space: {train.learning_rate: {type: float, low: 0.01, high: 0.1}}\nbudget: {trials: 1}"
    )
    ctx = context(p, tmp_path)
    notes: list[str] = []
    assert enqueue_default(new_study(ctx, tmp_path), p, p.search, notes.append) is None
    assert "outside the space" in notes[0]


def test_summary_picks_the_best_reports_the_default_and_importances(
    fake_fit: FakeFit, tmp_path: Path
) -> None:
    p = protocol_with(
        "sampler: random\n"
        "space: {train.learning_rate: {type: float, low: 1.0e-5, high: 1.0e-1, log: true},"
        " train.warmup_ratio: {type: float, low: 0.0, high: 0.2}}\n"
        "budget: {trials: 6}\npruner: {type: none}"
    )
    ctx = context(p, tmp_path)
    study = new_study(ctx, tmp_path)
    default = enqueue_default(study, p, p.search, ctx.log)
    loop = run_trials(study, ctx, leader=True)
    summary, trials = summarise(study, ctx, "sqlite:///x.db", "s", 3, loop, default)
    values = [t["value"] for t in trials]
    assert summary["best"]["value"] == max(values)
    assert summary["default"]["number"] == 0 and summary["default"]["value"] == values[0]
    assert summary["improvement_over_default"] == pytest.approx(max(values) - values[0])
    assert set(summary["importances"]) == {"train.learning_rate", "train.warmup_ratio"}
    assert sum(summary["importances"].values()) == pytest.approx(1.0, abs=1e-3)
    assert summary["split"] == "validation" and "validation split only" in summary["selection"]


def test_a_worker_with_other_data_is_refused(tmp_path: Path) -> None:
    p = protocol_with(f"{LR_SPACE}\nbudget: {{trials: 2}}")
    ctx = context(p, tmp_path)
    check_study(new_study(ctx, tmp_path), ctx)
    other = context(p, tmp_path)
    other.features["validation"] = [{"row_id": "v2", "input_ids": [9], "labels": 0}]
    with pytest.raises(SearchError, match="differ from the study"):
        check_study(new_study(other, tmp_path), other)


def test_ties_go_to_the_earliest_trial(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")
    for v in (0.5, 0.7, 0.7):
        study.add_trial(optuna.create_trial(value=v, params={}, distributions={}))
    assert best_trial(study, "maximize").number == 1


def test_grid_finds_the_default_among_its_points(fake_fit: FakeFit, tmp_path: Path) -> None:
    space = "space: {train.learning_rate: {type: float, low: 0.0005, high: 0.0015, step: 0.0005}}"
    on_grid = protocol_with(f"sampler: grid\n{space}")  # the protocol's 0.001 is a grid point
    ctx = context(on_grid, tmp_path)
    study = new_study(ctx, tmp_path, name="on")
    default = enqueue_default(study, on_grid, on_grid.search, ctx.log)
    loop = run_trials(study, ctx, leader=True)
    summary, rows = summarise(study, ctx, "sqlite:///x.db", "on", 0, loop, default)
    assert sorted(r["params"]["train.learning_rate"] for r in rows) == [0.0005, 0.001, 0.0015]  # each once
    assert summary["default"]["params"] == {"train.learning_rate": 0.001}
    assert [r["params"]["train.learning_rate"] for r in rows if r["default"]] == [0.001]

    off_grid = protocol_with(
        "sampler: grid\nspace: {train.learning_rate: {type: float, low: 0.0004, high: 0.0016, step: 0.0004}}"
    )
    ctx = context(off_grid, tmp_path)
    assert enqueue_default(new_study(ctx, tmp_path, name="off"), off_grid, off_grid.search, ctx.log) is None
