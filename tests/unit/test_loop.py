"""The training loop's guarantees: exact resume, accumulation equivalence, fail-fast on NaN."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from helpers import toy_reviews
from tuneproof.errors import Interrupted, TrainingDiverged
from tuneproof.protocol import parse_protocol
from tuneproof.tasks.classification import ClassificationTask
from tuneproof.train.checkpoint import list_checkpoints
from tuneproof.train.fit import apply_method
from tuneproof.train.loop import LoopConfig, TrainResult, epoch_batches, train_loop
from tuneproof.train.model_source import load_tokenizer, resolve_model

# Summation order differs between one batch of 8 and four of 2, so equality is up to float rounding.
ACCUM_MAX_DIFF = 1e-5
ACCUM_MEAN_DIFF = 1e-6


class Harness:
    def __init__(self, tiny_bert: Path, tmp: Path, train: str) -> None:
        self.protocol = parse_protocol(
            f"name: t\nseed: 5\nmodel: {{source: {tiny_bert}, max_length: 32}}\n"
            f"data: {{files: [x.jsonl], labels: [neg, pos]}}\ntrain: {train}\n"
        )
        self.task = ClassificationTask(self.protocol)
        self.ref = resolve_model(self.protocol.model, tmp)
        tok = load_tokenizer(self.ref)
        df = pd.DataFrame(toy_reviews(48, seed=1))
        df["row_id"] = [f"r{i}" for i in range(len(df))]
        self.features = self.task.features(df, tok, tmp / "cache")
        self.tmp = tmp

    def run(
        self,
        ckpt: str,
        resume: bool = False,
        on_log: Any = None,
        loss_wrap: Any = None,
        precision: str = "fp32",
    ) -> TrainResult:
        torch.manual_seed(self.protocol.seed)
        model = apply_method(self.task.build_model(self.ref), self.protocol, self.task)
        loss = self.task.loss_fn(self.features)
        cfg = LoopConfig(
            spec=self.protocol.train,
            seed=self.protocol.seed,
            checkpoint_dir=self.tmp / ckpt,
            lengths=np.array([len(f["input_ids"]) for f in self.features]),
            row_ids=[f["row_id"] for f in self.features],
            on_log=on_log,
            precision=precision,
        )
        self.model = model
        return train_loop(
            model,
            self.features,
            self.task.collate(0),
            loss_wrap(loss) if loss_wrap else loss,
            cfg,
            resume=resume,
        )

    def weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def losses(result: TrainResult) -> list[float]:
    return [e["loss"] for e in result.log_history if "loss" in e]


@pytest.fixture
def harness(tiny_bert: Path, tmp_path: Path) -> Harness:
    return Harness(
        tiny_bert, tmp_path, "{max_steps: 12, batch_size: 8, checkpoint_every_steps: 4, learning_rate: 0.003}"
    )


class Stop(Exception):
    pass


def _stop_at(step: int, how: str) -> Any:
    def on_log(entry: dict[str, Any]) -> None:
        if entry["step"] == step and "loss" in entry:
            if how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)  # handled between steps: checkpoint, then Interrupted
            else:
                raise Stop  # like a crash: no checkpoint for this step

    return on_log


@pytest.mark.parametrize(("how", "stop_step", "resumed_at"), [("crash", 6, 4), ("sigterm", 6, 6)])
def test_resume_equals_uninterrupted(harness: Harness, how: str, stop_step: int, resumed_at: int) -> None:
    straight = harness.run("a")
    w_straight = harness.weights()
    with pytest.raises(Interrupted if how == "sigterm" else Stop):
        harness.run("b", on_log=_stop_at(stop_step, how))
    assert max(s for s, _ in list_checkpoints(harness.tmp / "b")) == resumed_at
    resumed = harness.run("b", resume=True)
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith(f"checkpoint-{resumed_at}")
    assert losses(resumed) == losses(straight)  # bit-identical on CPU, dropout included
    assert resumed.seen_row_ids == straight.seen_row_ids
    w_resumed = harness.weights()
    assert all(torch.equal(w_straight[k], w_resumed[k]) for k in w_straight)


def test_resume_restores_data_order_mid_epoch(harness: Harness) -> None:
    straight = harness.run("a")
    # 48 examples / batch 8 = 6 steps per epoch; stopping at 4 resumes mid-epoch and crosses into epoch 2.
    with pytest.raises(Stop):
        harness.run("b", on_log=_stop_at(5, "crash"))
    resumed = harness.run("b", resume=True)
    assert resumed.seen_row_ids == straight.seen_row_ids
    first_epoch = [rid for step in straight.seen_row_ids[:6] for rid in step]
    assert sorted(first_epoch) == sorted(f"r{i}" for i in range(48))


def test_accumulation_matches_a_larger_batch(tiny_bert: Path, tmp_path: Path) -> None:
    common = "max_steps: 8, dropout: 0.0, learning_rate: 0.003, group_by_length: true"
    big = Harness(tiny_bert, tmp_path, f"{{{common}, batch_size: 8, gradient_accumulation: 1}}").run("a")
    small = Harness(tiny_bert, tmp_path, f"{{{common}, batch_size: 2, gradient_accumulation: 4}}").run("b")
    diff = np.abs(np.array(losses(big)) - np.array(losses(small)))
    assert diff.max() <= ACCUM_MAX_DIFF and diff.mean() <= ACCUM_MEAN_DIFF, diff
    assert big.seen_row_ids == small.seen_row_ids
    assert small.padding_efficiency > big.padding_efficiency * 0.9  # dynamic padding per micro-batch


def test_different_seed_changes_the_run(tiny_bert: Path, tmp_path: Path) -> None:
    a = Harness(tiny_bert, tmp_path, "{max_steps: 4, batch_size: 8}")
    b = Harness(tiny_bert, tmp_path, "{max_steps: 4, batch_size: 8}")
    b.protocol = b.protocol.model_copy(update={"seed": 6})
    assert losses(a.run("a")) != losses(b.run("b"))


def _nan_at(step: int) -> Any:
    calls = {"n": 0}

    def wrap(loss_fn: Any) -> Any:
        def loss(model: Any, batch: Any) -> Any:
            calls["n"] += 1
            value, count = loss_fn(model, batch)
            return (value * float("nan"), count) if calls["n"] == step else (value, count)

        return loss

    return wrap


def test_nan_loss_stops_at_that_step_with_example_ids(harness: Harness) -> None:
    with pytest.raises(TrainingDiverged) as info:
        harness.run("a", loss_wrap=_nan_at(7))
    msg = str(info.value)
    assert "non-finite loss" in msg and "at step 7" in msg and "batch example ids: r" in msg
    assert [s for s, _ in list_checkpoints(harness.tmp / "a")] == [4]  # nothing after the last good step


class _PoisonGrad(torch.autograd.Function):
    """Zero in the forward pass, NaN in the backward pass: a finite loss with a poisoned gradient."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        return x.sum() * 0.0

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return torch.full(ctx.shape, float("nan"))


def test_nan_gradient_stops_the_run(harness: Harness) -> None:
    def wrap(loss_fn: Any) -> Any:
        def loss(model: Any, batch: Any) -> Any:
            value, count = loss_fn(model, batch)
            return value + _PoisonGrad.apply(model.classifier.bias), count

        return loss

    with pytest.raises(TrainingDiverged, match="non-finite gradient norm at step 1"):
        harness.run("a", loss_wrap=wrap)
    assert list_checkpoints(harness.tmp / "a") == []


def test_epoch_batches_cover_every_example_once_and_group_lengths() -> None:
    lengths = np.random.default_rng(0).integers(1, 100, size=1000)
    steps = epoch_batches(1000, lengths, 10, seed=1, epoch=0, group_by_length=True)
    assert sorted(np.concatenate(steps).tolist()) == list(range(1000))
    spread = np.mean([lengths[s].max() - lengths[s].min() for s in steps])
    plain = epoch_batches(1000, lengths, 10, seed=1, epoch=0, group_by_length=False)
    assert spread < 0.25 * np.mean([lengths[s].max() - lengths[s].min() for s in plain])
    again = epoch_batches(1000, lengths, 10, seed=1, epoch=0, group_by_length=True)
    assert all(np.array_equal(a, b) for a, b in zip(steps, again, strict=True))


def test_precision_can_change_between_runs_in_one_process(tiny_bert: Path, tmp_path: Path) -> None:
    h = Harness(tiny_bert, tmp_path, "{max_steps: 1, batch_size: 8}")
    assert losses(h.run("a", precision="fp32"))
    assert losses(h.run("b", precision="bf16"))
    assert losses(h.run("c", precision="fp32"))


# -- engines: FSDP2 and DDP train; DeepSpeed, Megatron-LM and FSDP1 are refused ------------------


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"ACCELERATE_USE_DEEPSPEED": "true"}, "DEEPSPEED is not supported"),
        ({"ACCELERATE_USE_MEGATRON_LM": "true"}, "MEGATRON_LM is not supported"),
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}, "FSDP version 1 is not supported"),
        ({"ACCELERATE_USE_FSDP": "true"}, "FSDP version 1 is not supported"),  # accelerate's default
        (  # `accelerate launch --use_fsdp`'s default
            {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_CPU_RAM_EFFICIENT_LOADING": "true"},
            "cpu_ram_efficient_loading is not supported",
        ),
    ],
)
def test_refused_launch_configs_stop_the_loop_with_a_clear_error(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    from tuneproof.errors import TuneproofError

    monkeypatch.delenv("FSDP_VERSION", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # Before accelerate is asked (it would try to import DeepSpeed), and before any step or checkpoint.
    with pytest.raises(TuneproofError, match=named):
        harness.run("refused")
    assert not list_checkpoints(harness.tmp / "refused")


@pytest.mark.parametrize("kind", ["DistributedType.DEEPSPEED", "DistributedType.MEGATRON_LM"])
def test_an_accelerator_already_on_a_refused_engine_is_refused(kind: str) -> None:
    from types import SimpleNamespace

    from tuneproof.errors import TuneproofError
    from tuneproof.train.distributed import check_supported

    with pytest.raises(TuneproofError, match="not supported: tuneproof trains data-parallel with DDP"):
        check_supported(SimpleNamespace(distributed_type=kind))


def test_fsdp_requested_but_not_set_up_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from tuneproof.errors import TuneproofError
    from tuneproof.train.distributed import check_supported

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "2")
    # What accelerate 1.15 alone does on CPU (trains DDP): refused, the manifest would say "fsdp".
    with pytest.raises(TuneproofError, match="FSDP was requested but accelerate set up MULTI_CPU"):
        check_supported(SimpleNamespace(distributed_type="DistributedType.MULTI_CPU", num_processes=2))
    check_supported(SimpleNamespace(distributed_type="DistributedType.FSDP", num_processes=2, is_fsdp2=True))


def test_fsdp_launch_env_is_accelerates_and_keeps_the_users_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneproof.train.distributed import fsdp_launch_env, mode

    monkeypatch.delenv("FSDP_AUTO_WRAP_POLICY", raising=False)
    monkeypatch.setenv("FSDP_RESHARD_AFTER_FORWARD", "false")
    env = fsdp_launch_env()
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    assert env["FSDP_AUTO_WRAP_POLICY"] == "TRANSFORMER_BASED_WRAP"
    assert env["FSDP_RESHARD_AFTER_FORWARD"] == "false"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert mode() == "fsdp"
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "false")
    assert mode() == "ddp"
