"""Inference: tuneproof's ``predict`` path and HTTP serving path vs a plain transformers pipeline.

One packaged MiniLM classifier (the base encoder with a seeded new head: speed does not depend on
what the head learned) is served three ways, all in this one process:

* ``predictor``: ``tuneproof.serve.predict.Predictor.predict`` (what ``tuneproof predict`` runs):
  the packaged model's precision (bf16 autocast on a CPU with native bf16), ``inference_mode``,
  length-sorted batches with dynamic padding;
* ``serve``: POST /predict of ``tuneproof.serve.app.create_app`` through ``fastapi.testclient``
  (in process, no network), so HTTP, validation and JSON costs are included;
* ``pipeline``: ``transformers.pipeline("text-classification")`` on the same folder, fp32 as loaded.

Each request carries ``b`` texts (b = 1, 8, 32, 128): the predictor and pipeline get a list of
``b`` texts per call with ``batch_size=b``; the server gets one request of ``b`` texts and keeps
the app's own ``Predictor`` (default ``batch_size=64``: a request of 128 becomes two sorted
batches). Samples/s = texts / seconds over the whole sequence of requests. Arms are interleaved
per repeat (rotating which goes first) after one warm-up request each; medians over repeats.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from benchmarks.arms.common import peak_rss_mib, setup
from benchmarks.data import CACHE, LABELS, REPO, minilm_dir, rt_split


def package_run(run_dir: Path, seed: int) -> Path:
    """A run folder with a packaged model, as ``Predictor.load`` and ``create_app`` expect."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tuneproof.evidence import ModelInfo
    from tuneproof.export.package import package_model
    from tuneproof.protocol.schema import ModelSpec
    from tuneproof.train.model_source import base_model_record, resolve_model
    from tuneproof.train.precision import choose_precision

    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        minilm_dir(),
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={x: i for i, x in enumerate(LABELS)},
    )
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    precision = choose_precision("auto")[0]
    info = ModelInfo(
        task="classification",
        labels=LABELS,
        max_length=128,
        precision=precision,
        method="full",
        base_model=base_model_record(resolve_model(ModelSpec(source=str(minilm_dir())), REPO)),
        deployable=True,
    )
    package_model(model, tokenizer, info, run_dir / "model")
    shutil.copy(REPO / "examples" / "review-sentiment.yaml", run_dir / "protocol.source.yaml")
    return run_dir


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    setup(cfg["threads"])
    from transformers import pipeline

    from tuneproof.serve.predict import Predictor

    run_dir = package_run(CACHE / "inference-run", cfg["seed"])
    _, test = rt_split(cfg.get("n_train", 1000), cfg["n_texts"], cfg["seed"])
    texts = test["text"].tolist()

    predictor = Predictor.load(run_dir)
    pipe = pipeline(
        "text-classification", model=str(run_dir / "model"), tokenizer=str(run_dir / "model"), device="cpu"
    )
    arms: dict[str, Any] = {}

    def call_predictor(chunk: list[str], b: int) -> None:
        predictor.batch_size = b
        predictor.predict(chunk)

    def call_pipeline(chunk: list[str], b: int) -> None:
        pipe(chunk, batch_size=b, truncation=True, max_length=128)

    arms["predictor"] = call_predictor
    arms["pipeline"] = call_pipeline
    skipped: dict[str, str] = {}
    try:
        from fastapi.testclient import TestClient

        from tuneproof.serve.app import create_app

        client = TestClient(create_app(run_dir))

        def call_serve(chunk: list[str], b: int) -> None:
            client.post("/predict", json={"texts": chunk}).raise_for_status()

        arms["serve"] = call_serve
    except Exception as exc:  # httpx missing, or the app cannot start
        skipped["serve"] = f"{type(exc).__name__}: {exc}"

    order = list(arms)
    results: dict[str, dict[str, list[float]]] = {a: {} for a in arms}
    for b in cfg["batch_sizes"]:
        n = cfg["n_texts_b1"] if b == 1 else cfg["n_texts"]
        chunks = [texts[i : i + b] for i in range(0, min(n, len(texts)), b)]
        for arm in order:  # warm-up: kernels and allocator for this batch shape
            arms[arm](chunks[0], b)
        for rep in range(cfg["repeats"]):
            rotated = order[rep % len(order) :] + order[: rep % len(order)]
            for arm in rotated:
                t = time.perf_counter()
                for chunk in chunks:
                    arms[arm](chunk, b)
                seconds = time.perf_counter() - t
                results[arm].setdefault(str(b), []).append(sum(len(c) for c in chunks) / seconds)
    return {
        "samples_per_second": results,
        "precision": {"predictor": predictor.precision, "serve": predictor.precision, "pipeline": "fp32"},
        "skipped": skipped,
        "peak_rss_mib": peak_rss_mib(),
    }
