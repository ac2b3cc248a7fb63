"""sft, dapt and seq2seq through the CLI on tiny models: exit codes, evidence, baselines, lineage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from generative_helpers import (
    chat_rows,
    domain_lines,
    seq2seq_rows,
    write_jsonl,
    write_lines,
    write_tiny_llama,
    write_tiny_t5,
)

from tuneproof.fsutil import sha256_file

pytestmark = pytest.mark.integration


def tp(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tuneproof", *args],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_dir_of(res: subprocess.CompletedProcess[str]) -> Path:
    return Path(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("generative")
    write_tiny_llama(d / "llama")
    write_tiny_t5(d / "t5")
    write_jsonl(d / "chat.jsonl", chat_rows(90))
    write_lines(d / "domain.txt", domain_lines(160))
    write_lines(
        d / "general.txt", [f"what is the colour of the {t} it is" for t in ["sky", "sun", "rose"] * 12]
    )
    write_jsonl(d / "s2s.jsonl", seq2seq_rows(120))
    return d


# The toy generative data repeat themselves (seq2seq rows: 61% exact duplicates) and the splits are
# small on purpose: the removal limit and the split minimums are set explicitly for these smoke runs.
COMMON = """
seed: 5
cleaning: {near_duplicates: {enabled: false}, max_removed_fraction: 0.7}
split: {enforce_minimums: false}
leakage: {near: false}
evaluate: {bootstrap_samples: 200}
"""


@pytest.fixture(scope="module")
def dapt_run(work: Path) -> Path:
    (work / "dapt.yaml").write_text(f"""
name: dapt-tiny
task: dapt
model: {{source: ./llama, max_length: 24}}
data: {{files: [domain.txt]}}
dapt: {{general_text: [general.txt]}}
train: {{method: full, epochs: 2, batch_size: 8, learning_rate: 0.005, scheduler: constant, precision: fp32}}
gates:
  - {{metric: perplexity, beats: base_model}}
  - {{metric: general_perplexity, beats: base_model, by: -1000}}
{COMMON}""")
    res = tp("run", "dapt.yaml", "--output-dir", str(work / "runs"), cwd=work)
    assert res.returncode == 0, res.stderr[-3000:]
    return run_dir_of(res)


def test_dapt_reports_domain_and_general_perplexity_against_the_base_model(dapt_run: Path) -> None:
    metrics = json.loads((dapt_run / "metrics.json").read_text())
    for name in ("loss", "perplexity", "general_loss", "general_perplexity"):
        assert {"value", "low", "high"} <= set(metrics["model"][name])
        assert name in metrics["baselines"]["base_model"] and name in metrics["comparisons"]["base_model"]
    # Full fine-tuning on the domain text for two epochs lowers domain perplexity well past chance.
    assert metrics["comparisons"]["base_model"]["perplexity"]["high"] < 0
    assert metrics["language_modeling"]["general_text"]["blocks"] > 0
    gates = json.loads((dapt_run / "gates.json").read_text())
    assert gates["passed"] and "lower perplexity is better" in gates["verdicts"][0]["decided_on"]
    page = (dapt_run / "report.html").read_text()
    assert "Domain vs general perplexity (forgetting)" in page
    blocks = pd.read_parquet(dapt_run / "predictions" / "test.parquet")
    assert set(blocks["set"]) == {"test", "general"}


def test_sft_from_a_previous_run_keeps_the_lineage(work: Path, dapt_run: Path) -> None:
    (work / "sft.yaml").write_text(f"""
name: sft-chained
task: sft
model: {{source: {dapt_run}, max_length: 40}}
data: {{files: [chat.jsonl], text_column: messages}}
train: {{method: lora, lora: {{r: 8}}, epochs: 3, batch_size: 8, learning_rate: 0.01, scheduler: constant,
        precision: fp32}}
generation: {{max_new_tokens: 6, test_examples: 6, samples_in_report: 3}}
gates:
  - {{metric: perplexity, beats: base_model}}
  - {{metric: rouge_l, min: 0.0}}
{COMMON}""")
    res = tp("run", "sft.yaml", "--output-dir", str(work / "runs"), cwd=work)
    assert res.returncode == 0, res.stderr[-3000:]
    run = run_dir_of(res)
    manifest = json.loads((run / "manifest.json").read_text())
    parent = json.loads((dapt_run / "manifest.json").read_text())
    lineage = manifest["lineage"]
    # The root of the chain is the dapt run's base model, recorded as its protocol wrote it, hashed.
    assert lineage["base_model"] == parent["lineage"]["base_model"] == parent["base_model"]
    root = parent["base_model"]
    assert root["source"] == "./llama" and str(work) not in json.dumps(root)
    assert root["files"]["model.safetensors"] == sha256_file(work / "llama" / "model.safetensors")
    # This run's own base model is the dapt run's packaged model.
    assert manifest["base_model"]["source"] == str(dapt_run)
    assert manifest["base_model"]["files"]["model.safetensors"] == sha256_file(
        dapt_run / "model" / "model.safetensors"
    )
    assert lineage["parent"]["run"] == str(dapt_run)
    assert lineage["parent"]["task"] == "dapt" and lineage["parent"]["model_files_match_manifest"]
    import hashlib

    assert (
        lineage["parent"]["manifest_sha256"]
        == hashlib.sha256((dapt_run / "manifest.json").read_bytes()).hexdigest()
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["baselines"]) == {"base_model"}
    assert metrics["n_generated"] == 6 and len(metrics["samples"]) == 3
    assert {"model", "base_model", "reference", "prompt"} <= set(metrics["samples"][0])
    assert metrics["batching"]["packing"] is False and 0 < metrics["padding_efficiency"] <= 1
    assert metrics["truncation"]["train"]["dropped_no_assistant_tokens"] == 0
    page = (run / "report.html").read_text()
    assert "Sample generations vs the base model" in page and "SFT batching, padding and truncation" in page
    assert "could not be rendered" not in page
    assert tp("verify", str(run), cwd=work).returncode == 0
    # The packaged model serves: one generation per input line.
    (work / "ask.jsonl").write_text('{"text": "what is the colour of the sky"}\n')
    pred = tp("predict", str(run), "--input", "ask.jsonl", cwd=work)
    assert pred.returncode == 0, pred.stderr[-2000:]
    assert "generation" in json.loads(pred.stdout.strip().splitlines()[0])


def test_seq2seq_failing_gate_exits_4_with_the_evidence(work: Path) -> None:
    (work / "s2s.yaml").write_text(f"""
name: s2s-tiny
task: seq2seq
model: {{source: ./t5, max_length: 16}}
data: {{files: [s2s.jsonl], text_column: source, label_column: target}}
train: {{method: full, epochs: 2, batch_size: 8, learning_rate: 0.01, scheduler: constant, precision: fp32}}
generation: {{max_new_tokens: 6, max_target_length: 8}}
gates:
  - {{metric: chrf, min: 101}}
{COMMON}""")
    res = tp("run", "s2s.yaml", "--output-dir", str(work / "runs"), cwd=work)
    assert res.returncode == 4, res.stderr[-3000:]
    run = run_dir_of(res)
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics["model"]) == {"loss", "perplexity", "exact_match", "rouge_l", "chrf", "bleu"}
    assert set(metrics["comparisons"]["base_model"]) == set(metrics["model"])
    assert json.loads((run / "manifest.json").read_text())["status"] == "rejected"
    preds = pd.read_parquet(run / "predictions" / "test.parquet")
    assert preds["generation"].notna().all() and len(preds) == metrics["n"]


def test_invalid_conversations_exit_3_listing_every_line(work: Path) -> None:
    bad = work / "bad.jsonl"
    write_jsonl(
        bad,
        [
            chat_rows(1)[0],
            {"messages": [{"role": "user", "content": "q"}]},
            {"messages": [{"role": "assistant", "content": "a"}]},
        ],
    )
    (work / "bad.yaml").write_text(
        "name: bad\ntask: sft\nmodel: {source: ./llama}\ndata: {files: [bad.jsonl], text_column: messages}\n"
    )
    for cmd in (("validate", "bad.yaml"), ("run", "bad.yaml", "--output-dir", str(work / "bad-runs"))):
        res = tp(*cmd, cwd=work)
        assert res.returncode in (2, 3), res.stderr[-2000:]  # validate reports data problems as exit 2
        assert f"{bad}:2: no assistant turn" in res.stderr
        assert f"{bad}:3: messages[0]: expected a user turn, got assistant" in res.stderr
    assert res.returncode == 3
    assert not (work / "bad-runs").exists() or not any((work / "bad-runs").iterdir())
