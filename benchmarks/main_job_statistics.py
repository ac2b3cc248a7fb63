"""Re-evaluate a finished main-job run folder with the statistics of docs/statistics.md.

    PYTHONPATH=. .venv/bin/python benchmarks/main_job_statistics.py runs/<review-sentiment run>

From the run's own splits and test predictions (nothing is retrained): the intervals with the row
bootstrap and with ``cluster_by: movie_name``; how many movies straddle its splits; ECE before and
after a temperature fitted on its validation split (the packaged model predicts the validation
split once); each printed, and written as JSON to ``--out`` (the run folder is only read: writing
into it would break ``tuneproof verify``).

    PYTHONPATH=. .venv/bin/python benchmarks/main_job_statistics.py \
        examples/review-sentiment.yaml --split-only

prepares the protocol's split as ``run`` would and shows the row and cluster intervals of the
TF-IDF baseline on it (no training): what clustering does on a split grouped by movie.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuneproof.data.split import straddling_clusters
from tuneproof.evaluate.baselines import majority_probs, tfidf_logreg_probs
from tuneproof.evaluate.calibration import apply_temperature, fit_temperature
from tuneproof.evaluate.classification import evaluate_classification
from tuneproof.evaluate.cluster_bootstrap import cluster_codes
from tuneproof.protocol import load_protocol

METRICS = ("accuracy", "macro_f1", "ece", "log_loss")


def _validation_probs(run: Path, val: pd.DataFrame) -> np.ndarray:
    import torch

    from tuneproof.serve.predict import Predictor

    predictor = Predictor.load(run)
    df = val.assign(label=None)[["row_id", "text", "label"]]
    feats = predictor.task.features_for_inference(df, predictor.tokenizer)
    pad_id = predictor.tokenizer.pad_token_id or 0
    with torch.inference_mode():
        out = predictor.task.predict(predictor.model, feats, pad_id, 64, predictor.precision)
    return np.asarray(out, dtype=np.float64)


def _fmt(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "n/a"
    point = entry.get("value", entry.get("diff"))
    return f"{point:.4f} [{entry['low']:.4f}, {entry['high']:.4f}] (width {entry['high'] - entry['low']:.4f})"


def split_effect(protocol_path: Path, column: str) -> dict[str, Any]:
    """On a protocol's own split (prepared as ``run`` would, nothing trained): TF-IDF + logistic
    regression, fitted on train, scored on test, with the row and the cluster bootstrap. It stands in
    for the model to show what clustering does to intervals on that split."""
    from tuneproof.data.prepare import prepare_data
    from tuneproof.tasks.registry import get_task

    loaded = load_protocol(protocol_path)
    protocol = loaded.protocol
    task = get_task(protocol)
    splits = prepare_data(
        protocol, loaded.base_dir, target_check=task.target_check(), stratify=task.stratify
    ).splits
    train, test = splits["train"], splits["test"]
    labels = list(protocol.data.labels or sorted(set(train["label"])))
    label2id = {lab: i for i, lab in enumerate(labels)}
    y_train = np.array([label2id[x] for x in train["label"]])
    y = np.array([label2id[x] for x in test["label"]])
    probs = tfidf_logreg_probs(
        train["text"].tolist(), y_train, test["text"].tolist(), len(labels), protocol.seed
    )
    majority = {"majority": majority_probs(y_train, len(test), len(labels))}
    codes = cluster_codes(test[column].tolist())
    out: dict[str, Any] = {
        "protocol": str(protocol_path),
        "test_rows": len(test),
        "straddling": straddling_clusters({s: p[column].tolist() for s, p in splits.items()}, column),
    }
    for how, spec, clusters in (
        ("row", protocol.evaluate.model_copy(update={"cluster_by": None}), None),
        ("cluster", protocol.evaluate.model_copy(update={"cluster_by": column}), codes),
    ):
        res = evaluate_classification(y, probs, majority, labels, spec, protocol.seed, clusters=clusters)
        out[how] = {m: res["model"][m] for m in METRICS}
        if clusters is not None:
            out["clusters"] = res["clustering"]["clusters"]
        print(f"TF-IDF on {protocol_path.name}, {how} bootstrap ({res['interval']}):", flush=True)
        for m in METRICS:
            print(f"  {m:9} {_fmt(out[how][m])}")
    print(
        f"test rows {len(test)}, {out.get('clusters')} clusters; "
        f"straddling: {out['straddling']['straddling']}"
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, help="a finished run folder, or with --split-only a protocol file")
    parser.add_argument("--column", default="movie_name")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--split-only", action="store_true", help="only the protocol's split: see split_effect"
    )
    args = parser.parse_args(argv)
    if args.split_only:
        result = split_effect(args.run, args.column)
        if args.out is not None:
            args.out.write_text(json.dumps(result, indent=1, default=float))
        return 0
    run: Path = args.run
    protocol = load_protocol(run / "protocol.source.yaml").protocol
    splits = {s: pd.read_parquet(run / "data" / f"{s}.parquet") for s in ("train", "validation", "test")}
    preds = pd.read_parquet(run / "predictions" / "test.parquet")
    test = splits["test"]
    if not (preds["row_id"].to_numpy() == test["row_id"].to_numpy()).all():
        raise SystemExit("predictions and test split are not aligned on row_id")
    labels = list(protocol.data.labels or sorted(set(splits["train"]["label"])))
    label2id = {lab: i for i, lab in enumerate(labels)}
    y = np.array([label2id[x] for x in test["label"]])
    y_train = np.array([label2id[x] for x in splits["train"]["label"]])
    probs = preds[[f"prob_{lab}" for lab in labels]].to_numpy(dtype=np.float64)
    baselines = {
        "majority": majority_probs(y_train, len(test), len(labels)),
        "tfidf_logreg": tfidf_logreg_probs(
            splits["train"]["text"].tolist(), y_train, test["text"].tolist(), len(labels), protocol.seed
        ),
    }
    codes = cluster_codes(test[args.column].tolist())
    spec_rows = protocol.evaluate.model_copy(update={"cluster_by": None})
    spec_clusters = protocol.evaluate.model_copy(update={"cluster_by": args.column})
    rows = evaluate_classification(y, probs, baselines, labels, spec_rows, protocol.seed)
    clustered = evaluate_classification(
        y, probs, baselines, labels, spec_clusters, protocol.seed, clusters=codes
    )

    val = splits["validation"]
    val_probs = _validation_probs(run, val)
    t = fit_temperature(val_probs, np.array([label2id[x] for x in val["label"]]))
    calibrated = evaluate_classification(
        y,
        apply_temperature(probs, t),
        baselines,
        labels,
        spec_clusters,
        protocol.seed,
        clusters=codes,
        uncalibrated=probs,
        temperature=t,
    )
    out: dict[str, Any] = {
        "run": str(run),
        "test_rows": len(test),
        "clusters": clustered["clustering"]["clusters"],
        "straddling": straddling_clusters(
            {s: p[args.column].tolist() for s, p in splits.items()}, args.column
        ),
        "row_bootstrap": {m: rows["model"][m] for m in METRICS},
        "cluster_bootstrap": {m: clustered["model"][m] for m in METRICS},
        "difference_vs_tfidf": {
            "row": rows["comparisons"]["tfidf_logreg"]["macro_f1"],
            "cluster": clustered["comparisons"]["tfidf_logreg"]["macro_f1"],
        },
        "temperature": t,
        "ece_before": calibrated["calibration"]["uncalibrated"]["ece"],
        "ece_after": calibrated["model"]["ece"],
        "ece_change": calibrated["calibration"]["change"]["ece"],
        "log_loss_before": calibrated["calibration"]["uncalibrated"]["log_loss"],
        "log_loss_after": calibrated["model"]["log_loss"],
    }
    print(
        f"test rows {len(test)}, {out['clusters']} movies; "
        f"movies straddling splits: {out['straddling']['straddling']}"
    )
    for m in METRICS:
        print(f"{m:9} rows     {_fmt(out['row_bootstrap'][m])}")
        print(f"{m:9} clusters {_fmt(out['cluster_bootstrap'][m])}")
    print(f"macro_f1 - tfidf rows     {_fmt(out['difference_vs_tfidf']['row'])}")
    print(f"macro_f1 - tfidf clusters {_fmt(out['difference_vs_tfidf']['cluster'])}")
    print(f"temperature {t:.4f} (fitted on {len(val)} validation rows)")
    print(f"ECE before {_fmt(out['ece_before'])}\nECE after  {_fmt(out['ece_after'])}")
    print(f"ECE change {_fmt(out['ece_change'])}")
    print(f"log loss before {_fmt(out['log_loss_before'])}, after {_fmt(out['log_loss_after'])}")
    if args.out is not None:
        args.out.write_text(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
