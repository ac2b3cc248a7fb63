"""Packaged runs built once per session through the CLI, and a real uvicorn server on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from generative_helpers import chat_rows, write_tiny_llama
from generative_helpers import write_jsonl as write_chat_jsonl

from helpers import toy_reviews, write_jsonl, write_protocol


def _tp_run(protocol: Path, cwd: Path) -> Path:
    res = subprocess.run(
        [sys.executable, "-m", "tuneproof", "run", str(protocol), "--output-dir", str(cwd / "runs")],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode in (0, 4), res.stderr[-3000:]
    return Path(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def serve_work(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    d = tmp_path_factory.mktemp("serve")
    write_jsonl(d / "reviews.jsonl", toy_reviews(400))  # a test split of 40 decides the gates
    return d


@pytest.fixture(scope="session")
def cls_run(serve_work: Path, tiny_bert: Path) -> Path:
    proto = write_protocol(
        serve_work / "cls.yaml",
        tiny_bert,
        serve_work / "reviews.jsonl",
        epochs="1",
        gates="  - {metric: accuracy, min: 0.0}",
    )
    return _tp_run(proto, serve_work)


@pytest.fixture(scope="session")
def rejected_run(serve_work: Path, tiny_bert: Path) -> Path:
    proto = write_protocol(
        serve_work / "rejected.yaml",
        tiny_bert,
        serve_work / "reviews.jsonl",
        epochs="1",
        gates="  - {metric: macro_f1, beats: tfidf_logreg, by: 0.5}",  # decidable, and fails
    )
    return _tp_run(proto, serve_work)


@pytest.fixture(scope="session")
def sft_run(serve_work: Path) -> Path:
    write_tiny_llama(serve_work / "llama")
    write_chat_jsonl(serve_work / "chat.jsonl", chat_rows(40))
    (serve_work / "sft.yaml").write_text("""
name: sft-tiny
task: sft
seed: 5
model: {source: ./llama, max_length: 40}
data: {files: [chat.jsonl], text_column: messages}
train: {method: full, epochs: 1, batch_size: 8, learning_rate: 0.01, scheduler: constant, precision: fp32}
generation: {max_new_tokens: 4, test_examples: 2, samples_in_report: 1}
cleaning: {near_duplicates: {enabled: false}, max_removed_fraction: 0.5}
# A smoke run: 40 templated conversations; a 30% test split still decides the perplexity gate.
split: {train: 0.6, validation: 0.1, test: 0.3, enforce_minimums: false}
leakage: {near: false}
evaluate: {bootstrap_samples: 100}
gates:
  - {metric: perplexity, max: 1000000}
""")
    return _tp_run(serve_work / "sft.yaml", serve_work)
