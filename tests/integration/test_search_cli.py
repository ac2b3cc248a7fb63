"""A search end to end on a tiny BERT: the run folder, the report, the frozen protocol, the test split
kept closed until the end, two workers sharing one study, and an interrupted search resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from helpers import toy_reviews, write_jsonl

pytestmark = pytest.mark.integration

ENV = {**os.environ, "TUNEPROOF_THREADS": "1", "OMP_NUM_THREADS": "1"}


def search_protocol(tmp: Path, tiny_bert: Path, trials: int = 4, extra: str = "", epochs: int = 3) -> Path:
    data = write_jsonl(tmp / "reviews.jsonl", toy_reviews(240, seed=5))
    path = tmp / "search.yaml"
    path.write_text(f"""
name: tiny-search
seed: 7
model: {{source: {tiny_bert}, max_length: 32}}
data: {{files: [{data}], labels: [neg, pos]}}
train:
  epochs: {epochs}
  batch_size: 16
  learning_rate: 0.0001
  scheduler: constant
  precision: fp32
  eval_every_steps: 6
evaluate: {{bootstrap_samples: 200, baselines: [majority]}}
tracking: {{tensorboard: false}}
search:
  sampler: tpe
  startup_trials: 2
  space:
    train.learning_rate: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}
    train.batch_size: {{type: categorical, choices: [8, 16]}}
  budget: {{trials: {trials}, minutes: 20}}
  pruner: {{type: median, startup_trials: 2}}
{extra}""")
    return path


def cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tuneproof", *args], env=ENV, capture_output=True, text=True, timeout=timeout
    )


def only_run(out: Path) -> Path:
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def test_search_run_folder_report_and_frozen_protocol(tiny_bert: Path, tmp_path: Path) -> None:
    protocol = search_protocol(tmp_path, tiny_bert)
    proc = cli("run", str(protocol), "--output-dir", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run(tmp_path / "runs")

    summary = json.loads((run / "search" / "summary.json").read_text())
    trials = json.loads((run / "search" / "trials.json").read_text())
    assert summary["trials"]["counted_against_budget"] == len(trials) == 4
    assert summary["stopped_because"] == "trial budget reached (4)"
    assert trials[0]["default"] and trials[0]["params"] == {
        "train.learning_rate": 0.0001,
        "train.batch_size": 16,
    }
    finished = [t for t in trials if t["state"] in ("complete", "pruned")]
    assert len(finished) == 4 and all(t["intermediate"] for t in finished)
    best = summary["best"]
    assert best["value"] == max(t["value"] for t in trials if t["state"] == "complete")
    assert summary["improvement_over_default"] == pytest.approx(best["value"] - trials[0]["value"])

    # The final model is the chosen configuration, trained again: it reproduces its trial exactly.
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["validation"]["macro_f1"] == pytest.approx(best["value"], abs=1e-9)
    resolved = yaml.safe_load((run / "protocol.yaml").read_text())
    assert resolved["search"] is None
    assert resolved["train"]["learning_rate"] == best["params"]["train.learning_rate"]
    assert yaml.safe_load((run / "protocol.source.yaml").read_text())["search"]["budget"]["trials"] == 4
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["search"]["best_trial"] == best["number"] and manifest["status"] == "passed"
    assert "search/study.db" in manifest["files"] and "search/chosen-protocol.yaml" in manifest["files"]
    assert not (run / "search" / "trials").exists() or not any((run / "search" / "trials").iterdir())

    page = (run / "report.html").read_text()
    assert 'id="search"' in page and "Hyper-parameter search" in page
    assert "validation split only" in page and "Optimisation history" in page and "<svg" in page
    assert "Parameter importances" in page and "chosen-protocol.yaml" in page
    assert page.count("<tr>") > 4

    # The frozen protocol re-runs the chosen configuration without search, from anywhere.
    chosen = run / "search" / "chosen-protocol.yaml"
    again = cli("run", str(chosen), "--output-dir", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr[-3000:]
    rerun = only_run(tmp_path / "again")
    assert not (rerun / "search").exists()
    again_metrics = json.loads((rerun / "metrics.json").read_text())
    assert again_metrics["validation"]["macro_f1"] == pytest.approx(best["value"], abs=1e-9)


def test_the_test_split_is_never_read_while_trials_run(
    tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tuneproof.runner import run as run_protocol
    from tuneproof.search import study
    from tuneproof.tasks.classification import ClassificationTask

    events: list[tuple[str, Any]] = []
    features, predict, build = (
        ClassificationTask.features,
        ClassificationTask.predict,
        ClassificationTask.build_model,
    )
    trial = study.run_one_trial

    def spy_features(self: Any, df: pd.DataFrame, *a: Any, **k: Any) -> Any:
        events.append(("tokenise", frozenset(df["row_id"])))
        return features(self, df, *a, **k)

    def spy_predict(self: Any, model: Any, feats: list[dict[str, Any]], *a: Any, **k: Any) -> Any:
        events.append(("predict", frozenset(f["row_id"] for f in feats)))
        return predict(self, model, feats, *a, **k)

    def spy_build(self: Any, ref: Any) -> Any:
        model = build(self, ref)
        events.append(("model", id(model)))
        return model

    def spy_trial(ctx: Any, t: Any) -> float:
        assert set(ctx.features) == {"train", "validation"}
        events.append(("trial start", t.number))
        try:
            return trial(ctx, t)
        finally:
            events.append(("trial end", t.number))

    monkeypatch.setattr(ClassificationTask, "features", spy_features)
    monkeypatch.setattr(ClassificationTask, "predict", spy_predict)
    monkeypatch.setattr(ClassificationTask, "build_model", spy_build)
    monkeypatch.setattr(study, "run_one_trial", spy_trial)

    outcome = run_protocol(
        search_protocol(tmp_path, tiny_bert, trials=3, epochs=2), output_dir=tmp_path / "runs"
    )
    test_ids = set(pd.read_parquet(outcome.run_dir / "data" / "test.parquet")["row_id"])
    val_ids = set(pd.read_parquet(outcome.run_dir / "data" / "validation.parquet")["row_id"])
    assert test_ids and not test_ids & val_ids

    last_trial_end = max(i for i, (kind, _) in enumerate(events) if kind == "trial end")
    touches_test = [
        i for i, (kind, rows) in enumerate(events) if kind in ("tokenise", "predict") and rows & test_ids
    ]
    assert touches_test and min(touches_test) > last_trial_end  # nothing of test before the search ended
    assert [events[i][0] for i in touches_test] == ["tokenise", "predict"]  # tokenised once, scored once
    during = events[: last_trial_end + 1]
    assert all(rows == val_ids for kind, rows in during if kind == "predict")  # trials score validation only
    # A fresh model object for every trial and for the final training.
    models = [v for kind, v in events if kind == "model"]
    assert len([k for k, _ in events if k == "trial start"]) == 3 and len(set(models)) == len(models) == 4


def test_two_local_workers_share_one_study(tiny_bert: Path, tmp_path: Path) -> None:
    protocol = search_protocol(tmp_path, tiny_bert, trials=6, epochs=2)
    proc = cli("run", str(protocol), "--output-dir", str(tmp_path / "runs"), "--processes", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = only_run(tmp_path / "runs")
    trials = json.loads((run / "search" / "trials.json").read_text())
    assert 6 <= len(trials) <= 7  # the budget is shared; two simultaneous checks may overshoot by one
    # Which worker takes how many trials depends on start-up timing on a loaded machine, so this
    # checks the shared budget and that the second worker joined the study; the unit test
    # test_search_study.py::test_two_workers_share_one_study_and_its_budget checks both contribute.
    assert 1 <= len({t["worker"] for t in trials}) <= 2
    assert all(t["state"] in ("complete", "pruned") for t in trials)
    assert "[search-worker" in proc.stderr


def test_an_interrupted_search_resumes_where_it_stopped(tiny_bert: Path, tmp_path: Path) -> None:
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    protocol = search_protocol(tmp_path, tiny_bert, trials=4, epochs=10)  # long enough to be interrupted
    out = tmp_path / "runs"
    leader = subprocess.Popen(
        [sys.executable, "-m", "tuneproof", "run", str(protocol), "--output-dir", str(out)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600
    db = None
    while time.monotonic() < deadline and leader.poll() is None:
        dbs = list(out.glob("*/search/study.db"))
        if dbs:
            db = dbs[0]
            try:
                names = optuna.study.get_all_study_names(f"sqlite:///{db}")
            except SQLAlchemyError:  # the leader is still creating the database's tables
                time.sleep(1)
                continue
            if names:
                s = optuna.load_study(study_name=names[0], storage=f"sqlite:///{db}")
                running = s.get_trials(states=(optuna.trial.TrialState.RUNNING,))
                if running and running[0].intermediate_values:  # a trial is training: stop the run now
                    break
        time.sleep(1)
    assert db is not None and leader.poll() is None
    leader.send_signal(signal.SIGINT)
    _, err = leader.communicate(timeout=300)
    assert leader.returncode == 130, err[-3000:]
    run = only_run(out)
    assert json.loads((run / "manifest.json").read_text())["status"] == "interrupted"

    # Shorter trials from here on would change the protocol; resume the same run folder instead.
    proc = cli("run", "--resume", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = json.loads((run / "search" / "trials.json").read_text())
    (stopped,) = [t for t in trials if t["state"] == "fail"]
    assert stopped["reason"].startswith("interrupted")
    (retry,) = [t for t in trials if t["retry_of"] == stopped["number"]]
    assert retry["params"] == stopped["params"] and retry["state"] in (
        "complete",
        "pruned",
    )  # same values again
    summary = json.loads((run / "search" / "summary.json").read_text())
    assert summary["trials"]["counted_against_budget"] == 4 and len(trials) == 5
    assert json.loads((run / "manifest.json").read_text())["status"] == "passed"
