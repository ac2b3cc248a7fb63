"""Token classification, regression and multi-label protocols end to end through the CLI, on the
tiny BERT: exit codes, run-folder artifacts, aligned predictions, packaged settings and `predict`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from task_fixtures import protocol_text, toy_multilabel, toy_ner, toy_scores, write_conll, write_rows

pytestmark = pytest.mark.integration


def tp(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tuneproof", *args],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _run_dir(res: subprocess.CompletedProcess[str]) -> Path:
    return Path(res.stdout.strip().splitlines()[-1])


def _predict(run_dir: Path, texts: list[str], cwd: Path) -> list[dict[str, Any]]:
    inputs = cwd / "inputs.txt"
    inputs.write_text("".join(t + "\n" for t in texts))
    res = tp("predict", str(run_dir), "--input", str(inputs), cwd=cwd)
    assert res.returncode == 0, res.stderr[-2000:]
    return [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]


def _aligned(run_dir: Path) -> pd.DataFrame:
    """Predictions joined to the prepared test split: same rows, same order, same gold labels."""
    test = pd.read_parquet(run_dir / "data" / "test.parquet")
    pred = pd.read_parquet(run_dir / "predictions" / "test.parquet")
    assert pred["row_id"].tolist() == test["row_id"].tolist()
    assert [np.asarray(x).tolist() for x in pred["label"]] == [np.asarray(x).tolist() for x in test["label"]]
    return pred


@pytest.fixture(scope="module")
def ner_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("ner")
    write_conll(d / "ner.conll", toy_ner(400, seed=1))
    data = "  files: [ner.conll]\n  format: conll\n  text_column: tokens\n  label_column: tags"
    gates = "  - {metric: f1, min: 0.5}\n  - {metric: per_entity.GOOD.f1, min: 0.8}"
    (d / "ner.yaml").write_text(protocol_text("token_classification", tiny_bert, data, epochs=8, gates=gates))
    res = tp("run", "ner.yaml", cwd=d)
    assert res.returncode == 0, res.stderr[-3000:]
    return _run_dir(res), d


def test_ner_run_scores_entities_and_predicts_spans(ner_run: tuple[Path, Path]) -> None:
    run_dir, cwd = ner_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["task"] == "token_classification" and metrics["unit"] == "sentence"
    assert set(metrics["model"]["per_entity"]) == {"BAD", "GOOD"}
    assert metrics["model"]["f1"]["low"] <= metrics["model"]["f1"]["value"] <= metrics["model"]["f1"]["high"]
    assert set(metrics["comparisons"]) == {"most_frequent_tag"}
    gates = json.loads((run_dir / "gates.json").read_text())
    assert (
        gates["passed"]
        and [v["decided_on"].startswith("lower bound") for v in gates["verdicts"]] == [True] * 2
    )
    pred = _aligned(run_dir)
    # The reported F1 is the strict seqeval F1 of the saved predictions.
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    gold, tags = [list(x) for x in pred["label"]], [list(x) for x in pred["pred"]]
    assert all(len(g) == len(t) for g, t in zip(gold, tags, strict=True))
    assert metrics["model"]["f1"]["value"] == pytest.approx(f1_score(gold, tags, mode="strict", scheme=IOB2))
    html = (run_dir / "report.html").read_text()
    assert 'id="per_entity"' in html and "could not be rendered" not in html
    [out] = _predict(run_dir, ["the film was superb"], cwd)
    assert out["tags"] == ["O", "O", "O", "B-GOOD"]
    assert out["entities"][0] | {"score": None} == {
        "type": "GOOD",
        "words": [3, 4],
        "text": "superb",
        "start": 13,
        "end": 19,
        "score": None,
    }


def test_a_bad_tag_stops_the_run_with_its_file_and_line(tmp_path: Path, tiny_bert: Path) -> None:
    (tmp_path / "ner.conll").write_text(
        "".join("film\tO\ngood\tB-GOOD\n\n" for _ in range(10)) + "the\tO\nawful\tI-BAD\n"
    )
    data = "  files: [ner.conll]\n  format: conll\n  text_column: tokens\n  label_column: tags"
    (tmp_path / "p.yaml").write_text(protocol_text("token_classification", tiny_bert, data))
    res = tp("run", "p.yaml", cwd=tmp_path)
    assert res.returncode == 3
    assert "ner.conll:32" in res.stderr and "I-BAD" in res.stderr
    res = tp("validate", "p.yaml", cwd=tmp_path)
    assert res.returncode == 3 and "ner.conll:32" in res.stderr  # a data problem: exit 3, as `run`


def test_regression_run_beats_the_mean_and_packages_its_scale(tmp_path: Path, tiny_bert: Path) -> None:
    write_rows(tmp_path / "scores.jsonl", toy_scores(300, seed=2))
    data = "  files: [scores.jsonl]\n  label_column: score"
    gates = "  - {metric: mae, beats: mean, by: 0.2}\n  - {metric: spearman, min: 0.7}"
    (tmp_path / "p.yaml").write_text(protocol_text("regression", tiny_bert, data, gates=gates))
    res = tp("run", "p.yaml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    run_dir = _run_dir(res)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["model"]) >= {"mae", "rmse", "r2", "spearman"}
    assert set(metrics["baselines"]) == {"mean", "tfidf_ridge"}
    assert metrics["baselines"]["mean"]["spearman"]["value"] is None
    pred = _aligned(run_dir)
    assert metrics["model"]["mae"]["value"] == pytest.approx(np.abs(pred["pred"] - pred["label"]).mean())
    config = json.loads((run_dir / "model" / "config.json").read_text())
    assert config["problem_type"] == "regression" and len(config["id2label"]) == 1
    assert set(config["tuneproof_target"]) == {"mean", "std"}
    good, bad = _predict(run_dir, ["good superb lovely film", "awful dull boring film"], tmp_path)
    assert good["score"] > 1.0 > -1.0 > bad["score"]  # +3 and -3 in the toy scoring


def test_multilabel_thresholds_are_tuned_on_validation_only(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runs in-process (typer's CliRunner) so the tuner can be watched: every call it gets must carry
    the validation split's labels, never the test split's."""
    from typer.testing import CliRunner

    import tuneproof.tasks.multilabel as ml
    from tuneproof.cli import app

    calls: list[np.ndarray] = []
    real = ml.tune_thresholds

    def watched(probs: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(np.asarray(y).copy())
        return real(probs, y)

    monkeypatch.setattr(ml, "tune_thresholds", watched)
    monkeypatch.chdir(tmp_path)
    write_rows(tmp_path / "ml.jsonl", toy_multilabel(300, seed=3))
    data = "  files: [ml.jsonl]\n  label_column: labels"
    gates = "  - {metric: micro_f1, min: 0.7}\n  - {metric: micro_f1, beats: majority, by: 0.1}"
    (tmp_path / "p.yaml").write_text(protocol_text("multilabel", tiny_bert, data, epochs=10, gates=gates))
    res = CliRunner().invoke(app, ["run", "p.yaml"])
    assert res.exit_code == 0, res.output[-3000:]
    run_dir = Path(res.stdout.strip().splitlines()[-1])
    labels = json.loads((run_dir / "metrics.json").read_text())["labels"]
    assert labels == ["neg", "pos"]

    def hot(split: str) -> list[list[int]]:
        df = pd.read_parquet(run_dir / "data" / f"{split}.parquet")
        return [[int(lab in set(row)) for lab in labels] for row in df["label"]]

    validation, test = hot("validation"), hot("test")
    assert validation != test
    # One call per validation pass in training (10 epochs), one after it, one for the TF-IDF baseline.
    assert len(calls) == 12
    assert all(c.tolist() == validation for c in calls)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    thresholds = metrics["thresholds"]
    assert thresholds["tuned_on"] == "validation"
    config = json.loads((run_dir / "model" / "config.json").read_text())
    assert config["tuneproof_thresholds"] == pytest.approx(thresholds["values"])
    assert config["problem_type"] == "multi_label_classification"
    pred = _aligned(run_dir)
    on = np.stack([pred[f"prob_{lab}"] >= thresholds["values"][lab] for lab in labels], axis=1)
    assert [[lab for lab, x in zip(labels, row, strict=True) if x] for row in on] == [
        list(p) for p in pred["pred"]
    ]
    res = CliRunner().invoke(app, ["show", str(run_dir)])
    assert "micro_f1" in res.output
    html = (run_dir / "report.html").read_text()
    assert 'id="thresholds"' in html and "could not be rendered" not in html
    inputs = tmp_path / "in.txt"
    inputs.write_text("the film was superb and awful\nthe plot\n")
    res = CliRunner().invoke(app, ["predict", str(run_dir), "--input", str(inputs)])
    outs = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert outs[0]["labels"] == ["neg", "pos"]
    # The packaged model decides with the tuned thresholds, not 0.5.
    for out in outs:
        expected = [lab for lab in labels if out["probabilities"][lab] >= thresholds["values"][lab] - 1e-6]
        assert out["labels"] == expected
