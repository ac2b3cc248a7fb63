"""benchmarks/image_recipe.py end to end on a tiny ViT and 36 generated images (one epoch of 3
steps per arm, one timing round): both arms run, on the same rows and the same evaluation grid, and
the JSON it writes holds what docs/performance.md quotes. Nothing here asserts a speed."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from image_helpers import write_image_folder, write_tiny_vit

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # plain `pytest` puts tests/, not the repository root, on the path
    sys.path.insert(0, str(ROOT))

from benchmarks import image_recipe  # noqa: E402

PROTOCOL = """
name: tiny-recipe
task: image_classification
seed: 3
model: {source: vit}
data: {files: [data]}
images: {augment: {hflip: 0.5}}
train: {batch_size: 8, learning_rate: 0.003, precision: auto}
"""


def test_the_image_benchmark_runs_both_arms_and_writes_its_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tiny_vit(tmp_path / "vit")
    write_image_folder(tmp_path / "data", 12)  # 3 classes x 12
    (tmp_path / "p.yaml").write_text(PROTOCOL)
    out = tmp_path / "out.json"
    argv = ["image_recipe", "--protocol", str(tmp_path / "p.yaml"), "--n-train", "24", "--n-test", "12"]
    argv += ["--epochs", "1", "--evals-per-epoch", "1", "--layout-rounds", "1", "--layout-steps", "1"]
    monkeypatch.setattr(sys, "argv", [*argv, "--threads", "1", "--json", str(out)])
    image_recipe.main()

    res = json.loads(out.read_text())
    runs = {r["arm"]: r for r in res["runs"]}
    assert set(runs) == {"tuneproof", "recipe"}
    train_rows = runs["tuneproof"]["train_images"]
    assert train_rows == runs["recipe"]["train_images"] > 0  # the same rows, one epoch
    steps = math.ceil(train_rows / 8)
    for r in runs.values():
        assert r["steps"] == steps and len(r["step_seconds"]) == steps
        assert r["step_seconds"] == sorted(r["step_seconds"]) and r["train_seconds"] > 0
        assert [p["step"] for p in r["trajectory"]] == [steps]  # the same grid: the epoch's end
        assert 0.0 <= r["trajectory"][0]["accuracy"] <= 1.0
    tp = runs["tuneproof"]
    # precision auto on an image model: the probe ran inside fit() and its choice is what trained.
    probe = tp["precision_probe"]
    assert probe is not None and tp["precision"] == probe["precision"]
    assert tp["channels_last"] == probe["channels_last"]
    assert {"fp32-nchw", "fp32-channels_last"} <= set(probe["step_seconds"])
    assert runs["recipe"]["precision"] == "fp32"
    for arm in ("tuneproof", "recipe"):
        row = res["rows"][arm]
        assert row["images_per_s"] == pytest.approx(train_rows / runs[arm]["train_seconds"])
        assert row["best_acc"] >= res["target"] - 1e-12
    ratios = res["ratios"]
    assert ratios["images_per_s"] == pytest.approx(
        res["rows"]["tuneproof"]["images_per_s"] / res["rows"]["recipe"]["images_per_s"]
    )
    assert ratios["time_to_target"] == pytest.approx(
        res["rows"]["recipe"]["tta_s"] / res["rows"]["tuneproof"]["tta_s"]
    )
    assert set(res["layout"]) == {"fp32-nchw", "fp32-channels_last", "bf16-nchw", "bf16-channels_last"}
    assert all(v > 0 for v in res["layout"].values())
    assert res["command"][1:3] == ["--protocol", str(tmp_path / "p.yaml")]
