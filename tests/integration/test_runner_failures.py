"""Failures inside a run leave a truthful, intact run folder."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest

from helpers import toy_reviews, write_jsonl, write_protocol
from tuneproof.errors import TrainingDiverged
from tuneproof.evidence import ModelInfo
from tuneproof.export import package as package_mod
from tuneproof.runner import run
from tuneproof.tasks.classification import ClassificationTask

pytestmark = pytest.mark.integration


def test_nan_marks_the_run_failed_and_writes_no_later_checkpoint(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", toy_reviews(200))
    proto = write_protocol(tmp_path / "p.yaml", tiny_bert, data)
    proto.write_text(
        proto.read_text().replace("  batch_size: 16", "  batch_size: 16\n  checkpoint_every_steps: 2")
    )
    original = ClassificationTask.loss_fn

    def poisoned(self: ClassificationTask, feats: Any) -> Any:
        inner = original(self, feats)
        calls = {"n": 0}

        def loss(model: Any, batch: Any) -> Any:
            calls["n"] += 1
            value, count = inner(model, batch)
            return (value * float("inf"), count) if calls["n"] == 5 else (value, count)

        return loss

    monkeypatch.setattr(ClassificationTask, "loss_fn", poisoned)
    with pytest.raises(TrainingDiverged, match=r"at step 5; batch example ids: d\.jsonl:"):
        run(proto)
    run_dir = next((tmp_path / "runs").iterdir())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "TrainingDiverged" in manifest["error"]
    assert manifest["deployable"] is False
    steps = sorted(int(p.name.split("-")[1]) for p in (run_dir / "checkpoints").glob("checkpoint-*"))
    assert steps and max(steps) == 4
    assert not (run_dir / "model").exists()
    assert "TrainingDiverged" in (run_dir / "report.html").read_text()


def _info(deployable: bool) -> ModelInfo:
    return ModelInfo(
        task="classification",
        labels=["a", "b"],
        max_length=32,
        method="full",
        base_model="tiny-bert",
        deployable=deployable,
    )


def test_a_failed_model_write_keeps_the_previous_model(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    out = tmp_path / "model"
    package_mod.package_model(model, tok, _info(deployable=True), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(tok), "save_pretrained", full_disk)
    with pytest.raises(OSError, match="No space left"):
        package_mod.package_model(model, tok, _info(deployable=False), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
