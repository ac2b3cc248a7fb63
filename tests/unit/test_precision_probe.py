"""The image precision probe (train/precision_probe.py): its decision on injected timings, its timing
loop on an injected clock (a slow candidate is dropped, the model and RNG are left as they were), a
run through fit() with precision auto, and channels-last training that resumes bit-identically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from test_images_train import Harness, Stop, _losses
from torch import nn

from tuneproof.protocol.schema import TrainSpec
from tuneproof.tasks.registry import get_task
from tuneproof.train.checkpoint import list_checkpoints
from tuneproof.train.fit import fit
from tuneproof.train.precision_probe import (
    FILE,
    Candidate,
    ProbeChoice,
    candidates_for,
    decide,
    time_candidates,
)

F_NCHW, F_CL = Candidate("fp32", False), Candidate("fp32", True)
B_NCHW, B_CL = Candidate("bf16", False), Candidate("bf16", True)


def test_the_fastest_candidate_wins_when_it_beats_the_default_clearly() -> None:
    seconds = {
        B_NCHW: [1.0, 1.2, 0.8],
        B_CL: [0.95, 1.1, 0.78],
        F_NCHW: [0.5, 0.6, 0.4],
        F_CL: [0.45, 0.6, 0.36],
    }
    choice = decide(seconds, B_NCHW, batch_size=32, steps_per_round=2)
    assert (choice.precision, choice.channels_last, choice.chosen) == ("fp32", True, "fp32-channels_last")
    assert choice.default == "bf16-nchw"
    # Paired by round: fp32-channels_last is 0.45, 0.5, 0.45 of the default in rounds 1, 2, 3.
    assert choice.relative_to_default == pytest.approx(
        {"bf16-nchw": 1.0, "bf16-channels_last": 0.95, "fp32-nchw": 0.5, "fp32-channels_last": 0.45}
    )
    assert choice.step_seconds["bf16-nchw"] == 1.0  # medians
    assert "0.45x" in choice.reason and "batch 32" in choice.reason


def test_the_default_is_kept_unless_another_candidate_is_faster_by_the_margin_in_every_round() -> None:
    # 4% faster: noise on a shared machine, not a reason to train in another layout.
    near = decide({F_NCHW: [1.0], F_CL: [0.96]}, F_NCHW, 8, 2, margin=0.05)
    assert (near.chosen, near.precision, near.channels_last) == ("fp32-nchw", "fp32", False)
    assert "kept the CPU-flag default" in near.reason and "0.96x" in near.reason
    # 6% faster: taken.
    assert decide({F_NCHW: [1.0], F_CL: [0.94]}, F_NCHW, 8, 2, margin=0.05).chosen == "fp32-channels_last"
    # A tie goes to the default.
    assert decide({F_NCHW: [1.0], F_CL: [1.0]}, F_NCHW, 8, 2, margin=0.0).chosen == "fp32-nchw"
    # Much faster in the median but slower in one round (a burst of load hit the default in two):
    # not clear enough.
    mixed = decide({F_NCHW: [2.0, 2.0, 1.0], F_CL: [1.0, 1.0, 1.1]}, F_NCHW, 8, 2)
    assert mixed.chosen == "fp32-nchw" and mixed.relative_to_default["fp32-channels_last"] == 0.5
    # The comparison is paired by round, not of medians: medians 1.0 vs 0.9 would say 0.9x, but
    # round by round the candidate is 1.4x, 0.45x, 1.1x the default.
    paired = decide({F_NCHW: [0.5, 2.0, 1.0], F_CL: [0.7, 0.9, 1.1]}, F_NCHW, 8, 2)
    assert paired.chosen == "fp32-nchw"
    assert paired.relative_to_default["fp32-channels_last"] == pytest.approx(1.1)


def test_a_default_that_was_not_timed_is_an_error() -> None:
    with pytest.raises(ValueError, match="bf16-nchw"):
        decide({F_NCHW: [1.0]}, B_NCHW, 8, 2)


def test_choice_round_trips_as_json() -> None:
    choice = decide({F_NCHW: [1.0, 2.0], F_CL: [0.5]}, F_NCHW, 8, 2)
    assert ProbeChoice.from_json(json.loads(json.dumps(choice.to_json()))) == choice


def test_bf16_is_timed_only_where_the_cpu_flags_gave_it() -> None:
    assert candidates_for("fp32") == [F_NCHW, F_CL]
    assert candidates_for("bf16") == [F_NCHW, F_CL, B_NCHW, B_CL]


class TinyConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4, 2)

    def forward(self, pixel_values: torch.Tensor) -> Any:
        h = self.drop(self.bn(self.conv(pixel_values)).mean((2, 3)))
        return type("Out", (), {"logits": self.head(h)})()


def test_timing_drops_a_slow_candidate_and_leaves_the_model_and_rng_as_they_were() -> None:
    now = [0.0]

    def loss_fn(model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
        # The injected clock: a bf16 step "takes" 10 s, an fp32 step 1 s (2 s channels-last).
        bf16 = torch.is_autocast_cpu_enabled()
        now[0] += 10.0 if bf16 else (2.0 if model.conv.weight.is_contiguous() is False else 1.0)
        logits = model(pixel_values=batch["pixel_values"]).logits.float()
        return nn.functional.cross_entropy(logits, batch["labels"], reduction="sum"), len(logits)

    torch.manual_seed(0)
    model = TinyConvNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = {"pixel_values": torch.randn(4, 3, 8, 8), "labels": torch.tensor([0, 1, 0, 1]), "_count": 4}
    rng = torch.get_rng_state()
    times = time_candidates(
        model,
        batch,
        loss_fn,
        TrainSpec(learning_rate=0.1),
        [F_NCHW, F_CL, B_NCHW, B_CL],
        rounds=3,
        steps=2,
        max_seconds=1e9,
        clock=lambda: now[0],
    )
    assert times[F_NCHW] == [1.0, 1.0, 1.0]  # seconds per step, each round
    # 2x and 10x the fastest, beyond DROP (1.5): timed in the first round, then no more.
    assert times[F_CL] == [2.0]
    assert times[B_NCHW] == [10.0] and times[B_CL] == [10.0]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # copies trained
    assert torch.equal(torch.get_rng_state(), rng)  # dropout in the copies used the RNG; restored
    choice = decide(times, F_NCHW, 4, 2)
    assert choice.chosen == "fp32-nchw"


def _harness(tmp: Path, train: str) -> Harness:
    return Harness(tmp, "{hflip: 0.5}", train)


AUTO = "max_steps: 6, batch_size: 8, checkpoint_every_steps: 3, learning_rate: 0.003, precision: auto"


def test_fit_with_precision_auto_probes_records_and_a_resume_reuses_the_choice(tmp_path: Path) -> None:
    h = _harness(tmp_path, AUTO)
    task = get_task(h.protocol, h.task.env)
    task.labels = h.task.labels
    features = {"train": h.features}
    proc = h.task.processor
    first = fit(task, h.protocol, h.ref, proc, features, tmp_path / "ck", "fp32")
    assert first.probe is not None and first.precision == first.probe.precision
    assert set(first.probe.step_seconds) == {"fp32-nchw", "fp32-channels_last"}  # no bf16 asked for
    assert first.probe.default == "fp32-nchw" and first.probe.batch_size == 8
    assert json.loads((tmp_path / "ck" / FILE).read_text()) == first.probe.to_json()
    # A resumed run does not time again: it trains as its first part chose (here a doctored file).
    forced = {**first.probe.to_json(), "channels_last": True, "chosen": "fp32-channels_last"}
    (tmp_path / "ck2").mkdir()
    (tmp_path / "ck2" / FILE).write_text(json.dumps(forced))
    resumed = fit(task, h.protocol, h.ref, proc, features, tmp_path / "ck2", "fp32", resume=True)
    assert resumed.probe == ProbeChoice.from_json(forced)
    # Trained channels-last, handed on contiguous (safetensors and ONNX need it).
    assert all(p.is_contiguous() for p in resumed.model.parameters())
    # An explicit precision is the protocol's: no probe.
    fixed = _harness(tmp_path / "fixed", AUTO.replace("auto", "fp32"))
    feats = {"train": fixed.features}
    res = fit(fixed.task, fixed.protocol, fixed.ref, proc, feats, tmp_path / "ck3", "fp32")
    assert res.probe is None and not (tmp_path / "ck3" / FILE).exists()


def test_a_resumed_channels_last_run_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    h = Harness(tmp_path, "{hflip: 0.5, rotation: {degrees: 10, p: 0.5}}")
    straight = h.run("a", channels_last=True)
    w_straight = {k: v.clone() for k, v in h.model.state_dict().items()}
    assert h.model.vit.embeddings.patch_embeddings.projection.weight.is_contiguous(
        memory_format=torch.channels_last
    )

    def crash(entry: dict[str, Any]) -> None:
        if entry["step"] == 5 and "loss" in entry:
            raise Stop

    with pytest.raises(Stop):
        h.run("b", on_log=crash, channels_last=True)
    assert max(s for s, _ in list_checkpoints(tmp_path / "b")) == 3
    resumed = h.run("b", resume=True, channels_last=True)
    assert _losses(resumed) == _losses(straight)
    w = h.model.state_dict()
    assert all(torch.equal(w_straight[k], w[k]) for k in w_straight)
