"""Training methods and options: LoRA, frozen encoder with a head, early stopping, imbalance."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from helpers import toy_reviews
from tuneproof.evidence import ModelInfo
from tuneproof.export.package import package_model
from tuneproof.protocol import parse_protocol
from tuneproof.tasks.classification import ClassificationTask
from tuneproof.train.fit import apply_method, fit
from tuneproof.train.model_source import load_tokenizer, resolve_model


def setup(tiny_bert: Path, tmp: Path, train: str, imbalance: str = "none", n: int = 64) -> tuple:
    protocol = parse_protocol(
        f"name: t\nseed: 3\nmodel: {{source: {tiny_bert}, max_length: 32}}\n"
        f"data: {{files: [x.jsonl], labels: [neg, pos]}}\ntrain: {train}\n"
        f"imbalance: {{strategy: {imbalance}}}\n"
    )
    task = ClassificationTask(protocol)
    ref = resolve_model(protocol.model, tmp)
    tok = load_tokenizer(ref)
    df = pd.DataFrame(toy_reviews(n, seed=2))
    df["row_id"] = [f"r{i}" for i in range(len(df))]
    feats = {
        "train": task.features(df[: n - 16], tok, None),
        "validation": task.features(df[n - 16 :], tok, None),
    }
    return protocol, task, ref, tok, feats


def test_lora_trains_only_adapters_and_head_and_packages_merged(tiny_bert: Path, tmp_path: Path) -> None:
    protocol, task, ref, tok, feats = setup(tiny_bert, tmp_path, "{method: lora, max_steps: 3, lora: {r: 4}}")
    torch.manual_seed(0)
    base = task.build_model(ref)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model = apply_method(base, protocol, task)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable)
    result = fit(task, protocol, ref, tok, feats, tmp_path / "ck", "fp32")
    info = ModelInfo(
        task="classification", labels=task.labels, max_length=32, method="lora", base_model="tiny"
    )
    merged = package_model(result.model, tok, info, tmp_path / "model")
    from transformers import AutoModelForSequenceClassification

    reloaded = AutoModelForSequenceClassification.from_pretrained(merged)
    assert not any("lora" in k for k in reloaded.state_dict())
    changed = [k for k, v in reloaded.state_dict().items() if k in before and not torch.equal(before[k], v)]
    assert changed  # the merged adapters changed the attention weights


def test_head_method_freezes_the_encoder(tiny_bert: Path, tmp_path: Path) -> None:
    protocol, task, ref, tok, feats = setup(
        tiny_bert, tmp_path, "{method: head, max_steps: 3, learning_rate: 0.01}"
    )
    result = fit(task, protocol, ref, tok, feats, tmp_path / "ck", "fp32")
    torch.manual_seed(protocol.seed)
    fresh = task.build_model(ref)
    after = result.model.state_dict()
    for name, value in fresh.state_dict().items():
        if name.startswith("bert."):
            assert torch.equal(value, after[name]), name
    assert not torch.equal(fresh.state_dict()["classifier.weight"], after["classifier.weight"])


def test_early_stopping_stops_and_keeps_the_best_validation_model(tiny_bert: Path, tmp_path: Path) -> None:
    # A learning rate this high makes validation worse after the first evaluations.
    protocol, task, ref, tok, feats = setup(
        tiny_bert,
        tmp_path,
        "{epochs: 20, batch_size: 8, eval_every_steps: 2, learning_rate: 0.05, "
        "early_stopping: {metric: loss, patience: 2}}",
    )
    result = fit(task, protocol, ref, tok, feats, tmp_path / "ck", "fp32")
    evals = [e for e in result.train.log_history if "eval_loss" in e]
    assert result.train.stopped_early and result.train.steps < 20 * 6
    best = min(evals, key=lambda e: e["eval_loss"])
    assert result.train.best_step == best["step"]
    again = task.validation_metrics(result.model, feats["validation"], 0, 64, "fp32")
    assert again["loss"] == pytest.approx(best["eval_loss"], abs=1e-6)


def test_class_weights_and_oversampling(tiny_bert: Path, tmp_path: Path) -> None:
    _, task, _, _, feats = setup(tiny_bert, tmp_path, "{max_steps: 1}", imbalance="oversample")
    skewed = [f for f in feats["train"] if f["labels"] == 1] + [
        f for f in feats["train"] if f["labels"] == 0
    ][:5]
    resampled = task.resample(skewed, seed=0)
    counts = pd.Series([f["labels"] for f in resampled]).value_counts()
    assert counts[0] == counts[1] == sum(f["labels"] == 1 for f in skewed)
    assert sum(str(f["row_id"]).endswith("#dup") for f in resampled) == len(resampled) - len(skewed)
    weights = task.class_weights(skewed)
    assert weights[0] > weights[1]
    assert weights[0] * 5 == pytest.approx(weights[1] * sum(f["labels"] == 1 for f in skewed))


def test_gradient_checkpointing_defaults_on_for_language_models_only() -> None:
    base = "name: t\nmodel: {source: m}\ndata: {files: [x.jsonl], labels: [a, b]}\n"
    assert parse_protocol(base).train.gradient_checkpointing is False
    sft = "name: t\ntask: sft\nmodel: {source: m}\ndata: {files: [x.jsonl]}\n"
    assert parse_protocol(sft).train.gradient_checkpointing is True
    assert parse_protocol(sft + "train: {epochs: 1}\n").train.gradient_checkpointing is True
    assert (
        parse_protocol(sft + "train: {gradient_checkpointing: false}\n").train.gradient_checkpointing is False
    )


@pytest.mark.parametrize("method", ["full", "lora"])
def test_gradient_checkpointing_trains_exactly_as_without_it(
    tiny_bert: Path, tmp_path: Path, method: str
) -> None:
    # Dropout on: the recomputed forward must draw the same masks (non-reentrant restores the RNG).
    train = f"{{method: {method}, max_steps: 4, batch_size: 8, dropout: 0.1, lora: {{r: 4}}"
    runs = {}
    for gc in (False, True):
        protocol, task, ref, tok, feats = setup(
            tiny_bert, tmp_path, train + f", gradient_checkpointing: {gc}}}"
        )
        result = fit(task, protocol, ref, tok, feats, tmp_path / f"ck-{gc}", "fp32")
        # transformers marks the layers' container (BertEncoder) when checkpointing is on.
        assert any(getattr(m, "gradient_checkpointing", False) is True for m in result.model.modules()) is gc
        runs[gc] = (
            [e["loss"] for e in result.train.log_history if "loss" in e],
            {k: v.clone() for k, v in result.model.state_dict().items()},
        )
    assert runs[True][0] == pytest.approx(runs[False][0], abs=1e-6)
    for k, v in runs[False][1].items():
        torch.testing.assert_close(runs[True][1][k], v, atol=1e-6, rtol=0)
