"""Planted label errors on Rotten Tomatoes: how well `cleaning.label_errors` finds them, and what
`policy: drop` does to test accuracy against leaving the flips in.

    PYTHONPATH=. python -m benchmarks.label_quality [--seeds 13 14 15] [--fraction 0.05] [--embeddings]

For each seed: a stratified train/test split of the de-duplicated snippets, a known fraction of the
training labels flipped (the test split is left clean, so it measures the truth), the label-error
step run on the noisy train split exactly as a protocol runs it, then a downstream classifier fitted
three times (clean labels, flipped labels, flipped labels with the suspects dropped) and scored on
the same test rows with bootstrap intervals and paired differences. The downstream classifier is
TF-IDF + logistic regression, and with ``--embeddings`` also a logistic regression on frozen
all-MiniLM-L6-v2 embeddings (mean-pooled); fine-tuning the encoder itself is not part of this
measurement (too slow to repeat on two shared cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.data import LABELS, rt_split  # noqa: E402
from tuneproof.data.label_errors import find_suspects  # noqa: E402
from tuneproof.evaluate.baselines import tfidf_logreg_probs  # noqa: E402
from tuneproof.evaluate.bootstrap import bootstrap_indices, estimate, paired_difference  # noqa: E402
from tuneproof.protocol.schema import LabelErrorsSpec  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "label_quality.json"
CONFIDENCE = 0.95
BOOTSTRAP = 2000


def plant_flips(labels: Sequence[str], fraction: float, seed: int) -> tuple[list[str], np.ndarray]:
    """``labels`` with ``fraction`` of them (chosen at random) flipped to the other class."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    flipped = np.sort(rng.choice(n, size=round(fraction * n), replace=False))
    out = list(labels)
    for i in flipped:
        out[i] = LABELS[1] if out[i] == LABELS[0] else LABELS[0]
    return out, flipped


def detection(flagged: np.ndarray, planted: np.ndarray) -> dict[str, float]:
    """Precision and recall of the flagged positions against the planted ones.

    Precision is a lower bound: the snippets carry label noise of their own, and a flagged row whose
    original label was already wrong counts here as a false alarm."""
    hit = len(np.intersect1d(flagged, planted))
    return {
        "flagged": len(flagged),
        "planted": len(planted),
        "found": int(hit),
        "precision": hit / len(flagged) if len(flagged) else 0.0,
        "recall": hit / len(planted) if len(planted) else 0.0,
    }


def _embedding_probs(x_train: np.ndarray, y: np.ndarray, x_test: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=1.0, max_iter=3000, random_state=seed).fit(x_train, y).predict_proba(x_test)


def _accuracy_stat(correct: np.ndarray) -> Any:
    return lambda idx: correct[idx].mean(axis=1)


def _normalised_embed(texts: Sequence[str]) -> np.ndarray:
    """Mean-pooled, L2-normalised frozen MiniLM embeddings: what `features: embeddings` gives the
    detector (tuneproof/data/frozen_embeddings.py), here through the benchmarks' on-disk cache."""
    from benchmarks.rt_embeddings import embed

    x = embed(list(texts))
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def one_seed(
    seed: int, fraction: float, n_test: int, embeddings: bool, detector: str = "tfidf"
) -> dict[str, Any]:
    train, test = rt_split(n_train=10**9, n_test=n_test, seed=seed)
    noisy, planted = plant_flips(train["label"].tolist(), fraction, seed)
    noisy_train = train.assign(label=noisy)
    spec = LabelErrorsSpec(policy="drop", features=detector)
    t0 = time.perf_counter()
    embedder = _normalised_embed if detector == "embeddings" else None
    found, _, _ = find_suspects(spec, {"train": noisy_train}, seed, embedder)
    seconds = time.perf_counter() - t0
    flagged = found["train"].positions
    keep = np.ones(len(train), dtype=bool)
    keep[flagged] = False
    y_test = np.array([LABELS.index(x) for x in test["label"]])
    arms_labels = {
        "clean labels": (np.ones(len(train), dtype=bool), train["label"].tolist()),
        "5% flipped, kept": (np.ones(len(train), dtype=bool), noisy),
        "5% flipped, suspects dropped": (keep, noisy),
    }
    idx = bootstrap_indices(len(test), BOOTSTRAP, seed)
    models: dict[str, dict[str, Any]] = {}
    x_emb = x_emb_test = None
    if embeddings:
        from benchmarks.rt_embeddings import embed

        x_emb, x_emb_test = embed(train["text"].tolist()), embed(test["text"].tolist())
    for model_name in ["tfidf_logreg", *(["minilm_embeddings_logreg"] if embeddings else [])]:
        correct: dict[str, np.ndarray] = {}
        for arm, (mask, labels) in arms_labels.items():
            y = np.array([LABELS.index(x) for x in labels])[mask]
            if model_name == "tfidf_logreg":
                texts = train["text"].to_numpy()[mask].tolist()
                probs = tfidf_logreg_probs(texts, y, test["text"].tolist(), 2, seed)
            else:
                assert x_emb is not None and x_emb_test is not None
                probs = _embedding_probs(x_emb[mask], y, x_emb_test, seed)
            correct[arm] = (probs.argmax(1) == y_test).astype(np.float64)
        stats = {arm: estimate(_accuracy_stat(c), idx, CONFIDENCE) for arm, c in correct.items()}
        diffs = {
            "dropped - kept": paired_difference(
                _accuracy_stat(correct["5% flipped, suspects dropped"]),
                _accuracy_stat(correct["5% flipped, kept"]),
                idx,
                CONFIDENCE,
            ),
            "clean - kept": paired_difference(
                _accuracy_stat(correct["clean labels"]),
                _accuracy_stat(correct["5% flipped, kept"]),
                idx,
                CONFIDENCE,
            ),
        }
        models[model_name] = {"accuracy": stats, "paired_differences": diffs}
    return {
        "seed": seed,
        "detector": detector,
        "train_rows": len(train),
        "test_rows": len(test),
        "detection": detection(flagged, planted),
        "detection_seconds": round(seconds, 2),
        "models": models,
    }


def _fmt(entry: dict[str, Any]) -> str:
    point = entry.get("value", entry.get("diff"))
    return (
        f"{point:+.4f} [{entry['low']:+.4f}, {entry['high']:+.4f}]"
        if "diff" in entry
        else (f"{point:.4f} [{entry['low']:.4f}, {entry['high']:.4f}]")
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 14, 15])
    parser.add_argument("--fraction", type=float, default=0.05)
    parser.add_argument("--test-rows", type=int, default=2000)
    parser.add_argument("--embeddings", action="store_true", help="also a frozen-MiniLM-embedding classifier")
    parser.add_argument(
        "--detector",
        choices=["tfidf", "embeddings"],
        default="tfidf",
        help="cleaning.label_errors.features: the detector's cheap model",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = [one_seed(s, args.fraction, args.test_rows, args.embeddings, args.detector) for s in args.seeds]
    for r in results:
        d = r["detection"]
        print(
            f"seed {r['seed']}: {r['train_rows']} train / {r['test_rows']} test rows; "
            f"flagged {d['flagged']}, planted {d['planted']}, found {d['found']}: "
            f"precision {d['precision']:.3f}, recall {d['recall']:.3f} ({r['detection_seconds']} s)"
        )
        for model, m in r["models"].items():
            for arm, entry in m["accuracy"].items():
                print(f"  {model:26s} {arm:30s} accuracy {_fmt(entry)}")
            for name, entry in m["paired_differences"].items():
                print(f"  {model:26s} {name:30s} {_fmt(entry)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"fraction": args.fraction, "seeds": results}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
