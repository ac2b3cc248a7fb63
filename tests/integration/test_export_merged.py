"""`merged` exports of LoRA runs (an encoder classifier and a causal LM): verified against the adapter
model they were merged from, and refused, with nothing written, where the merge changes results."""

from __future__ import annotations

from pathlib import Path

import pytest
from generative_helpers import chat_rows, write_tiny_llama
from generative_helpers import write_jsonl as write_chat_jsonl
from safetensors import safe_open

from helpers import toy_reviews, write_jsonl, write_protocol
from tuneproof.errors import ExportError
from tuneproof.export.info import ExportInfo, ExportVerification
from tuneproof.export.manifest import read_manifest, verify
from tuneproof.export.stage import export_run, make_exports
from tuneproof.protocol.schema import ExportSpec
from tuneproof.runner import run

pytestmark = pytest.mark.integration

LORA = "  method: lora\n  lora: {r: 4, alpha: 8, dropout: 0.0}\n"
GATES = """export:
  formats: [merged]
  gates:
    - {metric: accuracy, beats: original, by: -0.01}
    - {metric: identical_predictions, min: 0.9}
"""


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    d = tmp_path_factory.mktemp("export-lora")
    data = write_jsonl(d / "reviews.jsonl", toy_reviews(400))
    proto = write_protocol(d / "p.yaml", tiny_bert, data, lr="0.01")
    text = proto.read_text().replace("train:\n", "train:\n" + LORA, 1)
    proto.write_text(text + GATES)
    outcome = run(proto, output_dir=d / "runs")
    assert outcome.status in ("passed", "rejected")
    return outcome.run_dir


def test_a_lora_run_keeps_its_adapter_and_exports_merged_weights_verified_against_it(lora_run: Path) -> None:
    assert (lora_run / "adapter" / "adapter_config.json").is_file()
    folder = lora_run / "exports" / "merged"
    info = ExportInfo.read(folder)
    assert info.kind == "merged_weights" and info.labels == ["neg", "pos"]
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        names = list(f.keys())
    assert names and not any("lora_" in n for n in names)  # no adapter left: plain base weights
    v = ExportVerification.read(folder)
    assert v.gates.passed and v.evaluation["model"]["identical_predictions"]["value"] == 1.0
    assert v.evaluation["model"]["max_probability_difference"] < 1e-4
    assert "accuracy" in v.evaluation["comparisons"]["original"]
    assert verify(lora_run) == {"changed": [], "missing": [], "added": []}
    manifest = read_manifest(lora_run)
    assert manifest.exports is not None and "model.safetensors" in manifest.exports["merged"].files


def test_a_merge_beyond_tolerance_is_refused_and_nothing_is_written(lora_run: Path) -> None:
    manifest = read_manifest(lora_run)
    before = sorted(p.name for p in (lora_run / "exports").iterdir())
    # fp32 merging moves probabilities by rounding (~1e-7); a tolerance below that must refuse.
    spec = ExportSpec(formats=["merged"], merge_tolerance=1e-12)
    with pytest.raises(ExportError, match=r"merging the LoRA adapter changes the model's results"):
        make_exports(lora_run, spec, manifest)
    assert sorted(p.name for p in (lora_run / "exports").iterdir()) == before


def test_merged_needs_a_lora_run(tmp_path: Path, tiny_bert: Path) -> None:
    data = write_jsonl(tmp_path / "reviews.jsonl", toy_reviews(200))
    proto = write_protocol(tmp_path / "p.yaml", tiny_bert, data, epochs="1")
    run_dir = run(proto, output_dir=tmp_path / "runs").run_dir
    with pytest.raises(ExportError, match="applies to runs trained with LoRA"):
        export_run(run_dir, ["onnx", "merged"])
    # The ONNX export finished before the refusal: it stays recorded and hashed, nothing half-written.
    manifest = read_manifest(run_dir)
    assert manifest.exports is not None and set(manifest.exports) == {"onnx"}
    assert not (run_dir / "exports" / "merged").exists()
    assert verify(run_dir) == {"changed": [], "missing": [], "added": []}


def test_a_causal_lm_merged_export_is_compared_on_held_out_loss_and_generations(tmp_path: Path) -> None:
    write_tiny_llama(tmp_path / "llama")
    write_chat_jsonl(tmp_path / "chat.jsonl", chat_rows(40))
    (tmp_path / "sft.yaml").write_text("""
name: sft-tiny
task: sft
seed: 5
model: {source: ./llama, max_length: 40}
data: {files: [chat.jsonl], text_column: messages}
train: {method: lora, lora: {r: 4, alpha: 8, dropout: 0.0}, epochs: 1, batch_size: 8, learning_rate: 0.01,
        scheduler: constant, precision: fp32}
generation: {max_new_tokens: 4, test_examples: 4, samples_in_report: 1}
cleaning: {near_duplicates: {enabled: false}, max_removed_fraction: 0.5}
split: {train: 0.6, validation: 0.1, test: 0.3, enforce_minimums: false}
leakage: {near: false}
evaluate: {bootstrap_samples: 100}
gates:
  - {metric: perplexity, max: 1000000}
export:
  formats: [merged]
  gates:
    - {metric: loss, beats: original, by: -0.001}
    - {metric: max_token_loss_difference, max: 0.001}
""")
    run_dir = run(tmp_path / "sft.yaml", output_dir=tmp_path / "runs").run_dir
    v = ExportVerification.read(run_dir / "exports" / "merged")
    model = v.evaluation["model"]
    assert model["max_token_loss_difference"] < 1e-3
    assert model["identical_predictions"]["value"] == 1.0  # the same greedy generations
    loss = v.evaluation["comparisons"]["original"]["loss"]
    assert loss["low"] <= loss["diff"] <= loss["high"] and abs(loss["diff"]) < 1e-3
    assert v.gates.passed, [g.detail for g in v.gates.verdicts]
