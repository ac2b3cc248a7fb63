"""train.method setfit and evaluate.learning_curve through the runner on a tiny sentence model:
the same evidence, a safetensors-only package that predict and serve load, and a curve whose
points a second run reads from the cache."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import toy_reviews, write_jsonl
from tuneproof.runner import run
from tuneproof.serve.predict import Predictor

pytestmark = pytest.mark.integration

SETFIT = """
name: tiny-setfit
seed: 7
model: {{source: {model}, max_length: 32}}
data: {{files: [{data}], labels: [neg, pos]}}
train:
  method: setfit
  precision: fp32
  setfit: {{num_iterations: 4, batch_size: 16, learning_rate: 5.0e-4}}
evaluate:
  bootstrap_samples: 200
{curve}
gates:
  - {{metric: accuracy, min: 0.6}}
  - {{metric: accuracy, beats: majority}}
"""


def _protocol(d: Path, tiny_bert: Path, curve: str = "") -> Path:
    data = write_jsonl(d / "reviews.jsonl", toy_reviews(300))
    path = d / "protocol.yaml"
    path.write_text(SETFIT.format(model=tiny_bert, data=data, curve=curve))
    return path


@pytest.fixture(scope="module")
def setfit_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    d = tmp_path_factory.mktemp("setfit")
    outcome = run(_protocol(d, tiny_bert), output_dir=d / "runs")
    assert outcome.status == "passed", json.loads((outcome.run_dir / "gates.json").read_text())
    return outcome.run_dir


def test_setfit_run_has_the_same_evidence_and_a_safetensors_only_model(setfit_run: Path) -> None:
    for rel in (
        "metrics.json",
        "gates.json",
        "report.html",
        "model_card.md",
        "manifest.json",
        "training/log_history.json",
        "predictions/test.parquet",
        "reference/reference.json",
    ):
        assert (setfit_run / rel).is_file(), rel
    model = setfit_run / "model"
    names = {p.name for p in model.iterdir()}
    assert {"model.safetensors", "sentence_head.safetensors", "sentence_classifier.json"} <= names
    assert not [n for n in names if n.endswith((".pkl", ".joblib", ".bin", ".pt", ".pth"))]
    info = json.loads((model / "tuneproof_model.json").read_text())
    assert info["method"] == "setfit"
    metrics = json.loads((setfit_run / "metrics.json").read_text())
    assert metrics["model"]["accuracy"]["low"] >= 0.6
    assert metrics["comparisons"]["majority"]["accuracy"]["low"] > 0
    summary = json.loads((setfit_run / "training" / "summary.json").read_text())
    assert summary["steps"] > 0
    history = json.loads((setfit_run / "training" / "log_history.json").read_text())
    assert any(isinstance(e.get("loss"), float) for e in history)  # the report's loss curve reads it
    assert "setfit" in (setfit_run / "report.html").read_text()


def test_predict_and_serve_answer_like_the_evaluation(setfit_run: Path) -> None:
    from fastapi.testclient import TestClient

    from tuneproof.serve.app import create_app
    from tuneproof.serve.settings import ServeSettings

    test = pd.read_parquet(setfit_run / "data" / "test.parquet")
    preds = pd.read_parquet(setfit_run / "predictions" / "test.parquet")
    texts = test["text"].tolist()[:12]
    out = Predictor.load(setfit_run).predict(texts)
    got = np.array([[p["probabilities"]["neg"], p["probabilities"]["pos"]] for p in out])
    want = preds[["prob_neg", "prob_pos"]].to_numpy()[:12]
    np.testing.assert_allclose(got, want, atol=1e-5)
    with TestClient(create_app(setfit_run, ServeSettings(warmup=False))) as client:
        r = client.post("/predict", json={"texts": texts[:3]})
        assert r.status_code == 200, r.text
        served = [p["label"] for p in r.json()["predictions"]]
    assert served == [p["label"] for p in out[:3]]


CURVE = """  learning_curve:
    sizes: [4, 8]
    repeats: 2
    methods: [protocol, tfidf_logreg]
    margin: 0.05"""


def test_learning_curve_is_reported_and_its_points_are_reused(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proto = _protocol(tmp_path, tiny_bert, CURVE)
    first = run(proto, output_dir=tmp_path / "runs")
    curve = json.loads((first.run_dir / "metrics.json").read_text())["learning_curve"]
    assert curve["trained_points"] == 2 * 2 * 2 + 1 and curve["cached_points"] == 0
    assert [p["size"] for p in curve["points"]["protocol"]] == [4, 8]
    assert curve["labels_per_class"]["8"] == {"neg": 8, "pos": 8}
    test_acc = json.loads((first.run_dir / "metrics.json").read_text())["model"]["accuracy"]["value"]
    assert curve["full"]["protocol"]["value"] == pytest.approx(test_acc)  # the run's own model
    assert curve["answer"].startswith("Fine-tuning (setfit)")
    html = (first.run_dir / "report.html").read_text()
    assert "Learning curve: how many labels" in html and curve["answer"][:40] in html
    assert not (first.run_dir / "learning_curve").exists()  # scratch only

    # A second run of the same protocol trains no point again; adding a size trains only it.
    proto.write_text(proto.read_text().replace("sizes: [4, 8]", "sizes: [4, 8, 16]"))
    second = run(proto, output_dir=tmp_path / "runs", fresh=True)
    again = json.loads((second.run_dir / "metrics.json").read_text())["learning_curve"]
    assert again["cached_points"] == curve["trained_points"] and again["trained_points"] == 2 * 2
    assert again["points"]["protocol"][:2] == curve["points"]["protocol"]


def test_multilabel_setfit_packages_one_sigmoid_head_per_label(tmp_path: Path, tiny_bert: Path) -> None:
    from task_fixtures import protocol_text, toy_multilabel, write_rows

    write_rows(tmp_path / "ml.jsonl", toy_multilabel(240, seed=3))
    text = protocol_text(
        "multilabel", tiny_bert, f"  files: [{tmp_path / 'ml.jsonl'}]\n  label_column: labels"
    )
    text = text.replace(
        "train:\n", "train:\n  method: setfit\n  setfit: {num_iterations: 4, learning_rate: 5.0e-4}\n"
    )
    text = text.replace("  scheduler: constant\n", "").replace("  learning_rate: 0.003\n", "")
    (tmp_path / "p.yaml").write_text(text)
    outcome = run(tmp_path / "p.yaml", output_dir=tmp_path / "runs")
    assert outcome.status in ("passed", "rejected")
    desc = json.loads((outcome.run_dir / "model" / "sentence_classifier.json").read_text())
    assert desc["activation"] == "sigmoid" and desc["num_labels"] == 2
    metrics = json.loads((outcome.run_dir / "metrics.json").read_text())
    assert metrics["comparisons"]["majority"]["micro_f1"]["diff"] > 0.05  # it learned something
    test = pd.read_parquet(outcome.run_dir / "data" / "test.parquet")
    preds = pd.read_parquet(outcome.run_dir / "predictions" / "test.parquet")
    out = Predictor.load(outcome.run_dir).predict(test["text"].tolist()[:8])
    labels = sorted(out[0]["probabilities"])
    got = np.array([[p["probabilities"][lab] for lab in labels] for p in out])
    np.testing.assert_allclose(got, preds[[f"prob_{lab}" for lab in labels]].to_numpy()[:8], atol=1e-5)
