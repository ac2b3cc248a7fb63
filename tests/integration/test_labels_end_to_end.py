"""One tiny run through the CLI with skewed classes and planted label flips: `imbalance: auto`
chooses class weights and says why, small classes are warned about before training and beside their
per-class metrics, suspected label errors are dropped from train and listed in report.html, and
`tuneproof suggest` ranks a pool with the packaged model into a file ready to label."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import NEGATIVE, NEUTRAL, POSITIVE, write_jsonl

pytestmark = pytest.mark.integration

PROTOCOL = """
name: tiny-labels
task: classification
seed: 7
model: {{source: {model}, max_length: 32}}
data: {{files: [{data}], labels: [neg, pos]}}
cleaning: {{near_duplicates: {{enabled: false}}, label_errors: {{policy: drop}}}}
split: {{train: 0.6, validation: 0.1, test: 0.3, enforce_minimums: false}}
imbalance: {{strategy: auto, auto_ratio: 3}}  # below the default threshold, to keep the data small
train: {{epochs: 2, scheduler: constant, batch_size: 16, learning_rate: 0.003, precision: fp32}}
evaluate: {{bootstrap_samples: 200}}
gates:
  - {{metric: accuracy, min: 0.0}}
"""
RATIO = 6  # pos : neg


def skewed_reviews(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "neg" if i % (RATIO + 1) == 0 else "pos"
        words = rng.sample(POSITIVE if label == "pos" else NEGATIVE, 2) + rng.sample(NEUTRAL, 4)
        rng.shuffle(words)
        rows.append({"text": " ".join(words) + f" {i}", "label": label})
    for i in range(5, n, 40):  # planted flips
        rows[i]["label"] = "neg" if rows[i]["label"] == "pos" else "pos"
    return rows


@pytest.fixture(scope="module")
def labels_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> tuple[Path, str]:
    d = tmp_path_factory.mktemp("labels-run")
    data = write_jsonl(d / "reviews.jsonl", skewed_reviews(420, seed=2))
    proto = d / "protocol.yaml"
    proto.write_text(PROTOCOL.format(model=tiny_bert, data=data))
    res = subprocess.run(
        [sys.executable, "-m", "tuneproof", "run", str(proto)],
        cwd=d,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return Path(res.stdout.strip().splitlines()[-1]), res.stderr


def test_auto_imbalance_chooses_class_weights_and_says_why(labels_run: tuple[Path, str]) -> None:
    run_dir, _ = labels_run
    report = json.loads((run_dir / "data_report.json").read_text())
    imb = report["imbalance"]
    train = report["label_distribution"]["train"]
    assert imb["requested"] == "auto" and imb["strategy"] == "class_weights"
    assert imb["ratio"] == pytest.approx(train["pos"] / train["neg"])
    assert (
        set(imb["class_weights"]) == {"neg", "pos"}
        and imb["class_weights"]["neg"] > 1 > imb["class_weights"]["pos"]
    )
    html = (run_dir / "report.html").read_text()
    assert "chosen by imbalance.strategy auto" in html and "imbalance.auto_ratio" in html


def test_small_classes_are_warned_before_training_and_beside_their_metrics(
    labels_run: tuple[Path, str],
) -> None:
    run_dir, stderr = labels_run
    report = json.loads((run_dir / "data_report.json").read_text())
    test_neg = report["label_distribution"]["test"]["neg"]
    assert test_neg < 30
    warned = [w for w in report["small_classes"] if w["label"] == "neg" and w["split"] == "test"]
    assert warned and warned[0]["rows"] == test_neg
    # Printed during the data stage, before the train stage starts.
    lines = stderr.splitlines()
    warn_at = next(i for i, line in enumerate(lines) if "warning: class 'neg'" in line)
    train_at = next(i for i, line in enumerate(lines) if line.startswith("[train]"))
    assert warn_at < train_at
    html = (run_dir / "report.html").read_text()
    assert f"too few: {test_neg} test rows" in html


def test_suspected_label_errors_are_dropped_from_train_and_listed(labels_run: tuple[Path, str]) -> None:
    import pandas as pd

    run_dir, _ = labels_run
    info = json.loads((run_dir / "data_report.json").read_text())["label_errors"]
    suspects = {r["row_id"] for r in info["splits"]["train"]["rows"]}
    assert suspects and info["dropped_from_train"] == len(suspects)
    train_ids = set(pd.read_parquet(run_dir / "data" / "train.parquet")["row_id"])
    assert not (train_ids & suspects)
    html = (run_dir / "report.html").read_text()
    assert "Data: suspected label errors" in html
    assert next(iter(sorted(suspects))) in html


def test_suggest_writes_the_most_uncertain_pool_texts_ready_to_label(
    labels_run: tuple[Path, str], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from tuneproof.cli import app

    run_dir, _ = labels_run
    rng = random.Random(9)
    pool = [
        {"text": " ".join(rng.sample(NEUTRAL, 3) + rng.sample(POSITIVE + NEGATIVE, 2))} for _ in range(60)
    ]
    already = pd_train_text(run_dir)
    pool += [{"text": already}, {"text": pool[0]["text"]}]  # one the run trained on, one repeat
    write_jsonl(tmp_path / "pool.jsonl", pool)
    out = tmp_path / "to-label.jsonl"
    r = CliRunner().invoke(
        app, ["suggest", str(run_dir), "--pool", str(tmp_path / "pool.jsonl"), "--n", "10", "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert "2 duplicates or texts the run already used left out" in r.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 10 and [x["rank"] for x in rows] == list(range(1, 11))
    assert all(x["label"] == "" and x["text"] != already for x in rows)
    scores = [x["uncertainty"] for x in rows]
    assert scores == sorted(scores, reverse=True)
    # The same numbers as `predict` gives for those texts, and nothing in the pool was less certain.
    from tuneproof.serve.predict import Predictor
    from tuneproof.suggest import uncertainty

    predictor = Predictor.load(run_dir)
    preds = predictor.predict([x["text"] for x in pool[:60]])
    import numpy as np

    margins = uncertainty(
        np.array([[p["probabilities"][lab] for lab in predictor.info.labels] for p in preds])
    )
    assert min(scores) >= np.sort(margins)[-10] - 1e-4
    first = preds[[x["text"] for x in pool[:60]].index(rows[0]["text"])]
    assert rows[0]["probabilities"] == pytest.approx(first["probabilities"], abs=1e-4)
    bad = CliRunner().invoke(
        app, ["suggest", str(run_dir), "--pool", str(tmp_path / "pool.jsonl"), "--method", "x"]
    )
    assert bad.exit_code == 2


def pd_train_text(run_dir: Path) -> str:
    import pandas as pd

    return str(pd.read_parquet(run_dir / "data" / "train.parquet")["text"].iloc[0])
