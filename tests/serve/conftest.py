"""Packaged runs built once per session through the CLI, and a real uvicorn server on loopback."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running(app: Any, timeout: float = 60.0) -> Iterator[str]:
    """The app under a real uvicorn server on 127.0.0.1 in a thread; stopped (bounded) on exit."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        assert thread.is_alive() and time.monotonic() - t0 < timeout, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "server did not stop"


def wait_ready(base: str, timeout: float = 60.0) -> None:
    import httpx

    t0 = time.monotonic()
    while httpx.get(f"{base}/ready").status_code != 200:
        assert time.monotonic() - t0 < timeout, "never ready"
        time.sleep(0.05)


class GatedPredictor:
    """A real predictor whose model calls wait for the test to open a gate: a slow model on demand,
    so back-pressure and cancellation are tested without timing races. Records every call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.task, self.model, self.tokenizer, self.info = (
            inner.task,
            inner.model,
            inner.tokenizer,
            inner.info,
        )
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[list[str]] = []

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        self.calls.append(list(texts))
        self.entered.set()
        assert self.gate.wait(60), "the test never opened the gate"
        return self.inner.predict(texts)
