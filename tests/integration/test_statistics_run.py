"""One small run with every statistics option on: clusters, group split, Holm, slices, temperature."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import toy_reviews, write_jsonl
from tuneproof.evaluate.calibration import apply_temperature
from tuneproof.serve.predict import Predictor

pytestmark = pytest.mark.integration

PROTOCOL = """
name: tiny-stats
task: classification
seed: 7
model: {{source: {model}, max_length: 32}}
data:
  files: [{data}]
  labels: [neg, pos]
  metadata_columns: [movie]
split: {{train: 0.7, validation: 0.15, test: 0.15, group_by: movie}}
train: {{epochs: 2, scheduler: constant, batch_size: 16, learning_rate: 0.003, precision: fp32}}
evaluate:
  bootstrap_samples: 200
  baselines: [majority]
  cluster_by: movie
  gate_family: holm
  slice_min_rows: 20
  slices: [{{by: length, edges: [8]}}]
calibration: temperature
gates:
  - {{metric: accuracy, min: 0.5}}
  - {{metric: accuracy, beats: majority, by: 0.0}}
  - {{metric: ece, max: 0.6}}
  - {{metric: accuracy, slice_min: 0.3}}
"""


def _tp(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tuneproof", *args],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    d = tmp_path_factory.mktemp("stats")
    rows = [{**r, "movie": f"m{i // 8}"} for i, r in enumerate(toy_reviews(400))]
    data = write_jsonl(d / "reviews.jsonl", rows)
    shutil.copytree(tiny_bert, d / "tiny-bert")
    (d / "protocol.yaml").write_text(PROTOCOL.format(model="tiny-bert", data=data))
    checked = _tp("validate", "protocol.yaml", cwd=d)
    assert checked.returncode == 0, checked.stderr[-2000:]
    assert "gates[1]" in checked.stdout and "detect" in checked.stdout  # power, before any training
    res = _tp("run", "protocol.yaml", cwd=d)
    assert res.returncode in (0, 4), res.stderr[-3000:]
    return Path(res.stdout.strip().splitlines()[-1])


def test_clusters_split_and_leakage(run_dir: Path) -> None:
    report = json.loads((run_dir / "data_report.json").read_text())
    assert report["leakage"]["clusters"]["straddling"] == 0
    splits = {s: set(pd.read_parquet(run_dir / "data" / f"{s}.parquet")["movie"]) for s in ("train", "test")}
    assert not splits["train"] & splits["test"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    info = metrics["clustering"]
    assert info["column"] == "movie" and info["clusters"] == len(splits["test"])
    assert info["row_level"]["accuracy"]["value"] == metrics["model"]["accuracy"]["value"]
    assert all("intervals" in s and "gated" in s for s in metrics["slices"])
    assert metrics["power"]["gates"][0]["gate"].startswith("accuracy beats majority")


def test_gates_are_judged_as_a_holm_family(run_dir: Path) -> None:
    gates = json.loads((run_dir / "gates.json").read_text())
    assert gates["family"]["method"] == "holm" and gates["family"]["gates"] == 4
    assert all(v["p_value"] is not None and "Holm" in v["detail"] for v in gates["verdicts"])
    slice_gate = gates["verdicts"][3]
    assert "lower bound" in slice_gate["decided_on"]
    html = (run_dir / "report.html").read_text()
    assert "Holm correction over 4 gates" in html and "Clustered rows" in html
    assert (
        "&#39;movie&#39; values in more than one split" in html
        or "'movie' values in more than one split" in html
    )
    card = (run_dir / "model_card.md").read_text()
    assert "Holm correction over 4 gates" in card and "temperature-scaled" in card
    assert "values of 'movie' (clusters)" in card


def test_the_shipped_model_is_calibrated_and_predict_returns_calibrated_probabilities(run_dir: Path) -> None:
    info = json.loads((run_dir / "model" / "tuneproof_model.json").read_text())
    t = info["temperature"]
    assert t > 0
    metrics = json.loads((run_dir / "metrics.json").read_text())
    cal = metrics["calibration"]
    assert cal["temperature"] == t and cal["fitted_on"] == "validation"
    assert set(cal["uncalibrated"]) >= {"ece", "log_loss", "bins"} and "ece" in cal["change"]
    # Temperature scaling fits log loss on validation; on test it should not be much worse.
    assert metrics["model"]["log_loss"]["value"] <= cal["uncalibrated"]["log_loss"]["value"] + 0.05
    test = pd.read_parquet(run_dir / "data" / "test.parquet")
    predictor = Predictor.load(run_dir)
    texts = test["text"].tolist()[:12]
    got = np.array([[r["probabilities"]["neg"], r["probabilities"]["pos"]] for r in predictor.predict(texts)])
    saved = pd.read_parquet(run_dir / "predictions" / "test.parquet")[["prob_neg", "prob_pos"]].to_numpy()[
        :12
    ]
    np.testing.assert_allclose(got, saved, atol=2e-6)  # the evaluated probabilities are the served ones
    predictor.info.temperature = None
    raw = np.array([[r["probabilities"]["neg"], r["probabilities"]["pos"]] for r in predictor.predict(texts)])
    np.testing.assert_allclose(apply_temperature(raw, t), got, atol=2e-5)
