"""A new task is one module plus one registry line: a small task defined here, in the test file,
goes through validate, run, predict and the report without any other part of tuneproof changing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from helpers import toy_reviews, write_jsonl
from tuneproof.data.prepare import PreparedData, TargetCheck
from tuneproof.evaluate.baselines import majority_probs
from tuneproof.evaluate.classification import classification_metric_names, evaluate_classification
from tuneproof.tasks import registry
from tuneproof.tasks._inference import predict_rows
from tuneproof.tasks.base import Baselines, TaskEnv
from tuneproof.tasks.encoder import EncoderTask
from tuneproof.tasks.spec import TaskSpec
from tuneproof.train.loop import LossFn
from tuneproof.train.model_source import ModelRef

LABELS = ["no", "yes"]


def boolean_target(value: Any) -> tuple[Any, str | None]:
    if not isinstance(value, bool):
        return None, f"target must be true or false, got {value!r}"
    return ("yes" if value else "no"), None


class PraiseTask(EncoderTask):
    """Does the text praise its subject? The target is a JSON boolean."""

    spec = TaskSpec(
        name="praise",
        purpose="tells whether a text praises its subject",
        baselines=("majority",),
        default_baselines=("majority",),
        selection_metrics=("accuracy", "loss"),
        stratify=True,
        options=("data.label_column",),
    )

    def __init__(self, protocol: Any, env: TaskEnv | None = None) -> None:
        super().__init__(protocol, env)
        self.labels = list(LABELS)

    def target_check(self) -> TargetCheck:
        return boolean_target

    def features(self, df: pd.DataFrame, tokenizer: Any, cache_dir: Path | None) -> list[dict[str, Any]]:
        return self.text_features(
            df,
            tokenizer,
            cache_dir,
            ("label", df["label"].tolist()),
            lambda values: [LABELS.index(v) for v in values],
            "praise",
        )

    def build_model(self, ref: ModelRef) -> nn.Module:
        return self.load_head_model(ref, num_labels=2)

    def metric_names(self) -> list[str]:
        return classification_metric_names(LABELS)

    def loss_fn(self, train_features: list[dict[str, Any]]) -> LossFn:
        def loss(model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            ce = nn.functional.cross_entropy(logits.float(), batch["labels"], reduction="sum")
            return ce, len(batch["labels"])

        return loss

    def predict(
        self, model: nn.Module, features: list[dict[str, Any]], pad_id: int, batch_size: int, precision: str
    ) -> np.ndarray:
        return predict_rows(model, features, pad_id, batch_size, precision, 2, lambda t: torch.softmax(t, -1))

    def validation_metrics(
        self, model: nn.Module, features: list[dict[str, Any]], pad_id: int, batch_size: int, precision: str
    ) -> dict[str, float]:
        probs = self.predict(model, features, pad_id, batch_size, precision)
        y = np.array([f["labels"] for f in features])
        p_true = np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)
        return {"loss": float(-np.log(p_true).mean()), "accuracy": float((probs.argmax(1) == y).mean())}

    def baselines(self, prepared: PreparedData, test: pd.DataFrame, device: Any = None) -> Baselines:
        y_train = np.array([LABELS.index(v) for v in prepared.splits["train"]["label"]])
        return Baselines({"majority": majority_probs(y_train, len(test), 2)})

    def evaluate(
        self,
        test: pd.DataFrame,
        outputs: np.ndarray,
        baselines: dict[str, np.ndarray],
        validation: dict[str, Any] | None,
    ) -> dict[str, Any]:
        y = np.array([LABELS.index(v) for v in test["label"]])
        return evaluate_classification(
            y, outputs, baselines, LABELS, self.protocol.evaluate, self.protocol.seed, None, validation
        )

    def format_prediction(self, outputs: np.ndarray) -> list[dict[str, Any]]:
        return [{"praises": bool(p.argmax() == 1), "p_yes": round(float(p[1]), 6)} for p in outputs]

    def prediction_frame(self, df: pd.DataFrame, outputs: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {"row_id": df["row_id"], "label": df["label"], "pred": [LABELS[i] for i in outputs.argmax(1)]}
        )


@pytest.fixture
def praise_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    # The one registry line a new task needs, added for this test only.
    monkeypatch.setitem(registry.TASKS, "praise", f"{__name__}:PraiseTask")


def _protocol(tmp_path: Path, tiny_bert: Path, extra: str = "", name: str = "praise.yaml") -> Path:
    rows = [{"text": r["text"], "praise": r["label"] == "pos"} for r in toy_reviews(240, seed=3, noise=0.0)]
    data = write_jsonl(tmp_path / "praise.jsonl", rows)
    path = tmp_path / name
    path.write_text(
        f"""
name: praise
task: praise
seed: 5
model: {{source: {tiny_bert}, max_length: 32}}
data: {{files: [{data}], label_column: praise}}
train: {{epochs: 4, batch_size: 16, learning_rate: 0.003, scheduler: constant, precision: fp32}}
evaluate: {{bootstrap_samples: 200}}
gates:
  - {{metric: accuracy, beats: majority, by: 0.05}}
{extra}"""
    )
    return path


def test_a_task_defined_outside_tuneproof_validates_runs_predicts_and_reports(
    tmp_path: Path, tiny_bert: Path, praise_registered: None
) -> None:
    from tuneproof.protocol.check import check_protocol
    from tuneproof.runner import run
    from tuneproof.serve.predict import Predictor

    path = _protocol(tmp_path, tiny_bert)
    loaded, problems = check_protocol(path, read_data=True)
    assert problems == [] and loaded is not None
    # The task's own metadata filled the defaults and drives validation.
    assert loaded.protocol.evaluate.baselines == ["majority"]
    _, bad = check_protocol(_protocol(tmp_path, tiny_bert, "imbalance: {strategy: oversample}", "bad.yaml"))
    assert any("imbalance.oversample does not apply to praise" in p.message for p in bad), bad

    outcome = run(path, output_dir=tmp_path / "runs")
    metrics = json.loads((outcome.run_dir / "metrics.json").read_text())
    assert outcome.status == "passed", json.loads((outcome.run_dir / "gates.json").read_text())
    assert metrics["model"]["accuracy"]["value"] > metrics["baselines"]["majority"]["accuracy"]["value"]

    predictor = Predictor.load(outcome.run_dir)
    out = predictor.predict(["great wonderful superb film", "awful dull terrible plot"])
    assert [o["praises"] for o in out] == [True, False]

    page = (outcome.run_dir / "report.html").read_text()
    assert "Gate verdicts" in page and "accuracy beats majority" in page
    assert "tells whether a text praises its subject" in (outcome.run_dir / "model_card.md").read_text()
