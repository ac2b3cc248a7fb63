"""DP-SGD with Opacus: the section is strict, unsupported settings and layers stop the run before
training, the reported epsilon is Opacus's own for the same settings, LoRA adapters change under DP,
and resume keeps the accountant's budget."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from helpers import toy_reviews, write_jsonl, write_protocol
from tuneproof.errors import ProtocolError
from tuneproof.privacy.dp_loop import check_dp_supported
from tuneproof.privacy.spec import DpSgdSpec
from tuneproof.protocol.schema import TrainSpec
from tuneproof.train.loop import LoopConfig


def _rdp_epsilon(sigma: float, q: float, steps: int, delta: float) -> float:
    from opacus.accountants import RDPAccountant

    acc = RDPAccountant()
    acc.history = [(sigma, q, steps)]
    return float(acc.get_epsilon(delta))


def _cfg(tmp: Path, **train: Any) -> LoopConfig:
    return LoopConfig(
        spec=TrainSpec.model_validate(train),
        seed=1,
        checkpoint_dir=tmp,
        lengths=np.ones(4),
        row_ids=list("abcd"),
    )


def test_the_section_needs_exactly_one_noise_setting() -> None:
    assert DpSgdSpec(noise_multiplier=1.0).delta == 1e-5
    for bad in ({}, {"target_epsilon": 3, "noise_multiplier": 1.0}, {"noise_multiplier": 1.0, "clip": 1}):
        with pytest.raises(ValidationError):
            DpSgdSpec.model_validate(bad)


def test_unsupported_layers_and_settings_are_protocol_errors(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    with pytest.raises(ProtocolError) as err:
        check_dp_supported(model, _cfg(tmp_path, gradient_accumulation=2), world_size=1)
    text = str(err.value)
    assert "train.gradient_accumulation" in text and "Opacus cannot train this model" in text
    assert "BatchNorm" in text
    check_dp_supported(nn.Sequential(nn.Linear(4, 2)), _cfg(tmp_path), world_size=1)  # no error


DP = """split: {{train: 0.7, validation: 0.1, test: 0.2}}
privacy:
  dp_sgd: {{{noise}, delta: 1.0e-5, max_grad_norm: 1.0}}
"""


def _dp_protocol(
    tmp: Path,
    tiny_bert: Path,
    noise: str,
    extra_train: str = "",
    gates: str = "",
    epochs: str = "3",
    lr: str = "0.02",
) -> Path:
    data = write_jsonl(tmp / "d.jsonl", toy_reviews(200, seed=2, noise=0.0))
    gates = gates or "  - {metric: accuracy, min: 0.0}"
    proto = write_protocol(tmp / "p.yaml", tiny_bert, data, epochs=epochs, lr=lr, gates=gates)
    text = proto.read_text().replace("  precision: fp32\n", f"  precision: fp32\n{extra_train}")
    proto.write_text(text + DP.format(noise=noise))
    return proto


@pytest.mark.integration
def test_a_lora_dp_run_reports_opacus_epsilon_and_its_adapters_change(
    tmp_path: Path, tiny_bert: Path
) -> None:
    from safetensors.torch import load_file

    from tuneproof.runner import run

    gates = "  - {metric: epsilon, max: 100}"
    proto = _dp_protocol(tmp_path, tiny_bert, "noise_multiplier: 0.7", "  method: lora\n", gates, epochs="8")
    outcome = run(proto, output_dir=tmp_path / "runs")
    metrics = json.loads((outcome.run_dir / "metrics.json").read_text())
    rec = metrics["privacy"]["dp_sgd"]
    assert rec["steps"] == 8 * 9 and rec["sample_rate"] == pytest.approx(1 / 9)  # 140 rows, batch 16
    assert rec["noise_multiplier"] == 0.7 and rec["max_grad_norm"] == 1.0 and rec["delta"] == 1e-5
    expected = _rdp_epsilon(0.7, 1 / 9, 72, 1e-5)
    assert metrics["model"]["epsilon"] == pytest.approx(expected, rel=1e-12)
    summary = json.loads((outcome.run_dir / "training" / "summary.json").read_text())
    assert summary["dp_sgd"]["epsilon"] == pytest.approx(expected, rel=1e-12)
    verdicts = json.loads((outcome.run_dir / "gates.json").read_text())["verdicts"]
    assert verdicts[0]["metric"] == "epsilon" and verdicts[0]["passed"] == (expected <= 100)
    # The adapters moved: the merged query weights differ from the base model's (Opacus #820).
    base = load_file(str(tiny_bert / "model.safetensors"))
    tuned = load_file(str(outcome.run_dir / "model" / "model.safetensors"))
    key = next(k for k in tuned if k.endswith("layer.0.attention.self.query.weight"))
    base_key = next(k for k in base if k.endswith("layer.0.attention.self.query.weight"))
    assert not torch.equal(tuned[key], base[base_key])


@pytest.mark.integration
def test_resume_keeps_the_accountant_budget(tmp_path: Path, tiny_bert: Path) -> None:
    from tuneproof.context import build_context
    from tuneproof.protocol import load_protocol
    from tuneproof.train.fit import build_features, fit

    def fit_for(max_steps: int, resume: bool) -> Any:
        proto = _dp_protocol(tmp_path, tiny_bert, "noise_multiplier: 1.1", f"  max_steps: {max_steps}\n")
        ctx = build_context(load_protocol(proto), tmp_path, None)
        prepared = ctx.prepare()
        ctx.task.set_labels(prepared)
        feats = build_features(ctx.task, prepared.splits, ctx.tokenizer, None)
        return fit(ctx.task, ctx.protocol, ctx.ref, ctx.tokenizer, feats, tmp_path / "ck", "fp32", resume)

    first = fit_for(4, resume=False)
    assert first.dp_sgd["steps"] == 4
    second = fit_for(8, resume=True)
    assert second.train.resumed_from is not None and second.train.resumed_from.endswith("checkpoint-4")
    q = second.dp_sgd["sample_rate"]
    assert second.dp_sgd["steps"] == 8 and second.dp_sgd["accountant_history"] == [[1.1, q, 8]]
    assert second.dp_sgd["epsilon"] == pytest.approx(_rdp_epsilon(1.1, q, 8, 1e-5), rel=1e-12)
    assert second.dp_sgd["epsilon"] > first.dp_sgd["epsilon"]


@pytest.mark.integration
def test_a_target_epsilon_is_met_and_gated(tmp_path: Path, tiny_bert: Path) -> None:
    from tuneproof.runner import run

    gates = "  - {metric: epsilon, max: 8}\n  - {metric: epsilon, max: 7}"
    proto = _dp_protocol(tmp_path, tiny_bert, "target_epsilon: 8.0", gates=gates, epochs="2", lr="0.003")
    outcome = run(proto, output_dir=tmp_path / "runs")
    metrics = json.loads((outcome.run_dir / "metrics.json").read_text())
    rec = metrics["privacy"]["dp_sgd"]
    assert 7.8 <= rec["epsilon"] <= 8.0 and rec["target_epsilon"] == 8.0
    assert rec["frozen_for_dp"] and all("position_embeddings" in n for n in rec["frozen_for_dp"])
    verdicts = json.loads((outcome.run_dir / "gates.json").read_text())["verdicts"]
    assert [v["passed"] for v in verdicts] == [True, False]  # epsilon <= 8 holds, <= 7 does not
    page = (outcome.run_dir / "report.html").read_text()
    assert "Differentially private training (DP-SGD, Opacus)" in page and "epsilon spent" in page


# --- sft with LoRA: a tiny causal LM built in code --------------------------------------------------
SFT = """
name: sft-dp
task: sft
seed: 3
model: {{source: {model}, max_length: 40}}
data: {{files: [{data}], text_column: messages}}
cleaning: {{near_duplicates: {{enabled: false}}, max_removed_fraction: 0.7}}
split: {{train: 0.7, validation: 0.0, test: 0.3, enforce_minimums: false}}
{sft}train: {{method: lora, lora: {{r: 8}}, epochs: 3, batch_size: 8, learning_rate: 0.01,
        scheduler: constant, precision: fp32{train}}}
generation: {{max_new_tokens: 4, test_examples: 4}}
evaluate: {{bootstrap_samples: 200}}
privacy:
  dp_sgd: {{noise_multiplier: 0.8, delta: 1.0e-5, max_grad_norm: 1.0}}
gates:
  - {{metric: epsilon, max: 100}}
"""


def _sft_protocol(tmp: Path, sft: str = "", train: str = "") -> Path:
    from generative_helpers import chat_rows, write_tiny_llama

    model = tmp / "llama"
    if not model.exists():
        write_tiny_llama(model)
    data = write_jsonl(tmp / "chat.jsonl", chat_rows(120, seed=3))
    proto = tmp / "sft.yaml"
    proto.write_text(SFT.format(model=model, data=data, sft=sft, train=train))
    return proto


def test_sft_under_dp_defaults_gradient_checkpointing_and_packing_off(tmp_path: Path) -> None:
    from tuneproof.protocol import load_protocol
    from tuneproof.tasks.registry import get_task

    protocol = load_protocol(_sft_protocol(tmp_path)).protocol
    assert protocol.train.gradient_checkpointing is False  # on by default for sft without DP
    task: Any = get_task(protocol)
    assert task.packing is False


@pytest.mark.integration
def test_sft_refuses_gradient_checkpointing_and_packing_under_dp(tmp_path: Path) -> None:
    from tuneproof.runner import run

    proto = _sft_protocol(tmp_path, sft="sft: {packing: true}\n", train=", gradient_checkpointing: true")
    with pytest.raises(ProtocolError) as err:
        run(proto, output_dir=tmp_path / "runs")
    where = [p.where for p in err.value.problems]
    assert where == ["train.gradient_checkpointing", "sft.packing"], where
    assert not list((tmp_path / "runs").glob("*/model"))  # refused before training


@pytest.mark.integration
def test_sft_with_lora_trains_under_dp_its_adapters_change_and_epsilon_is_opacus(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from tuneproof.runner import run

    outcome = run(_sft_protocol(tmp_path), output_dir=tmp_path / "runs")
    assert outcome.status == "passed"
    metrics = json.loads((outcome.run_dir / "metrics.json").read_text())
    rec = metrics["privacy"]["dp_sgd"]
    steps, q = rec["steps"], rec["sample_rate"]
    assert steps == 3 * round(1 / q) and rec["noise_multiplier"] == 0.8
    assert metrics["model"]["epsilon"] == pytest.approx(_rdp_epsilon(0.8, q, steps, 1e-5), rel=1e-12)
    manifest = json.loads((outcome.run_dir / "manifest.json").read_text())
    assert manifest["privacy"]["dp_sgd"]["epsilon"] == metrics["model"]["epsilon"]
    # Every adapted projection moved (merged weights differ from the base model's): no adapter got
    # a missing or zero per-example gradient (Opacus #820).
    base = load_file(str(tmp_path / "llama" / "model.safetensors"))
    tuned = load_file(str(outcome.run_dir / "model" / "model.safetensors"))
    adapted = [k for k in base if k.endswith("proj.weight")]
    assert len(adapted) == 14  # q, k, v, o, gate, up, down in 2 layers ("all-linear")
    unchanged = [k for k in adapted if torch.equal(tuned[k], base[k])]
    assert unchanged == [], unchanged
    assert torch.equal(tuned["lm_head.weight"], base["lm_head.weight"])  # LoRA leaves the head alone
