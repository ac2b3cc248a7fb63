"""``evaluate.learning_curve``: train each point with its method, score it on the test split the run
was scored on, and answer how many labels are needed, with intervals."""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tuneproof import __version__
from tuneproof.curve.points import FULL, CurvePoints, PointCache, compute_points, context_key
from tuneproof.curve.stats import (
    CurveBootstrap,
    PointReplicates,
    beats_from,
    difference,
    smallest_enough,
    summarize_point,
)
from tuneproof.data.prepare import PreparedData, split_hash
from tuneproof.evaluate.baselines import tfidf_logreg_probs
from tuneproof.protocol.schema import LearningCurveSpec, Protocol
from tuneproof.tasks.base import Task
from tuneproof.train.features import DEFAULT_CACHE
from tuneproof.train.model_source import ModelRef

TFIDF = "tfidf_logreg"
METHOD_NAMES = {"setfit": "SetFit", TFIDF: "TF-IDF + logistic regression"}


def method_protocol(protocol: Protocol, method: str, train_rows: int, spec: LearningCurveSpec) -> Protocol:
    """The protocol a point trains with: the run's own, or with setfit as the method; epochs raised
    to reach ``spec.min_steps`` optimizer steps on a small subset. Points train without validation."""
    # No early stopping at a point: a team with a few labels per class has no large validation
    # split to stop on, and validating every epoch of a tiny subset would cost more than training.
    train = protocol.train.model_copy(update={"early_stopping": None})
    if method == "setfit" and train.method != "setfit":
        train = train.model_copy(update={"method": "setfit"})
    if train.method != "setfit" and spec.min_steps and train.max_steps is None:
        per_epoch = math.ceil(train_rows / (train.batch_size * train.gradient_accumulation))
        needed = math.ceil(spec.min_steps / max(per_epoch, 1))
        if needed > train.epochs:
            train = train.model_copy(update={"epochs": float(needed)})
    return protocol.model_copy(update={"train": train})


def method_label(protocol: Protocol, method: str) -> str:
    if method == "protocol":
        return f"fine-tuning ({protocol.train.method})"
    return METHOD_NAMES.get(method, method)


def learning_curve(
    task: Task,
    protocol: Protocol,
    ref: ModelRef,
    tokenizer: Any,
    prepared: PreparedData,
    features: dict[str, list[dict[str, Any]]],
    outputs: np.ndarray,
    precision: str,
    run_dir: Path,
    cache_dir: Path | None,
    model_sha256: str,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    from tuneproof.train.fit import fit

    spec = protocol.evaluate.learning_curve
    assert spec is not None
    train_df, test_df = prepared.splits["train"], prepared.splits["test"]
    train_feats, test_feats = features["train"], features["test"]
    y_train = np.array([f["labels"] for f in train_feats])
    y_test = np.array([f["labels"] for f in test_feats])
    k = len(task.labels)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    work_root = run_dir / "learning_curve" / "work"
    methods: list[str] = list(spec.methods)
    if protocol.train.method == "setfit" and "setfit" in methods and "protocol" in methods:
        methods.remove("setfit")  # the protocol's own method already is setfit
    sizes = [n for n in spec.sizes if spec.max_size is None or n <= spec.max_size]

    def train_point(method: str, rows: np.ndarray) -> np.ndarray:
        if method == TFIDF:
            return tfidf_logreg_probs(
                train_df["text"].iloc[rows].tolist(),
                y_train[rows],
                test_df["text"].tolist(),
                k,
                protocol.seed,
            )
        proto = method_protocol(protocol, method, len(rows), spec)
        work = work_root / f"{method}-{len(rows)}"
        shutil.rmtree(work, ignore_errors=True)
        subset = {"train": [train_feats[i] for i in rows]}
        try:
            result = fit(task, proto, ref, tokenizer, subset, work, precision, splits=prepared.splits)
            probs = task.predict(
                result.model, test_feats, pad_id, protocol.evaluate.batch_size, result.precision
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return np.asarray(probs, dtype=np.float64)

    splits_key = {name: split_hash(df) for name, df in prepared.splits.items()}
    context = context_key(
        {
            "tuneproof": __version__,
            "task": task.name,
            "labels": task.labels,
            "splits": splits_key,
            "model": model_sha256,
            "max_length": protocol.model.max_length,
            "seed": protocol.seed,
            "precision": precision,
        }
    )
    settings = {
        m: method_protocol(protocol, m, 0, spec).train.model_dump_json()
        + f"|min_steps={spec.min_steps}|imbalance={protocol.imbalance.strategy}"
        for m in methods
        if m != TFIDF
    }
    cache = PointCache((cache_dir or DEFAULT_CACHE) / "learning_curve", context, settings)
    full: dict[str, np.ndarray | None] = {}
    if spec.include_full:
        for m in methods:
            if m == "protocol":
                full[m] = np.asarray(outputs, dtype=np.float64)  # the run's own model
            elif m == TFIDF:
                full[m] = None  # cheap: trained (or read from the cache) here
    points = compute_points(
        y_train,
        sizes,
        spec.repeats,
        methods,
        protocol.seed,
        cache,
        train_point,
        full,
        spec.budget_seconds,
        log,
    )
    shutil.rmtree(run_dir / "learning_curve", ignore_errors=True)  # only scratch lived there
    return summarize_curve(protocol, spec, methods, sizes, points, y_test, task.labels)


def summarize_curve(
    protocol: Protocol,
    spec: LearningCurveSpec,
    methods: list[str],
    sizes: list[int],
    points: CurvePoints,
    y_test: np.ndarray,
    labels: list[str],
) -> dict[str, Any]:
    confidence = protocol.evaluate.confidence
    boot = CurveBootstrap(y_test, protocol.evaluate.bootstrap_samples, protocol.seed)
    reps: dict[str, dict[int | str, PointReplicates]] = {
        m: {size: boot.point(spec.metric, probs) for size, probs in points.probs.get(m, {}).items()}
        for m in methods
    }
    out: dict[str, Any] = {
        "metric": spec.metric,
        "margin": spec.margin,
        "confidence": confidence,
        "repeats": spec.repeats,
        "sizes": sizes,
        "labels": labels,
        "labels_per_class": {str(n): {labels[c]: v for c, v in points.per_class[n].items()} for n in sizes},
        "methods": {m: method_label(protocol, m) for m in methods},
        "points": {},
        "full": {},
        "versus_full": {},
        "versus_tfidf": {},
        "enough": {},
        "beats_tfidf_from": {},
        "trained_points": points.trained,
        "cached_points": points.cached,
        "skipped_points": points.skipped,
        "seconds": round(points.seconds, 2),
    }
    for m in methods:
        by_size = reps[m]
        out["points"][m] = [
            {"size": n, "n_repeats": len(points.probs[m][n]), **summarize_point(by_size[n], confidence)}
            for n in sizes
            if n in by_size
        ]
        if FULL in by_size:
            out["full"][m] = summarize_point(by_size[FULL], confidence)
            vs_full = {n: difference(by_size[n], by_size[FULL], confidence) for n in sizes if n in by_size}
            out["versus_full"][m] = [{"size": n, **d} for n, d in vs_full.items()]
            out["enough"][m] = smallest_enough(sizes, vs_full, spec.margin)
        if m != TFIDF and TFIDF in reps:
            tf = reps[TFIDF]
            vs_tf = {n: difference(by_size[n], tf[n], confidence) for n in sizes if n in by_size and n in tf}
            out["versus_tfidf"][m] = [{"size": n, **d} for n, d in vs_tf.items()]
            out["beats_tfidf_from"][m] = beats_from(sizes, vs_tf)
    out["answer"] = answer(out)
    return out


def answer(curve: dict[str, Any]) -> str:
    """The curve's finding in sentences, one per method that has something to say."""
    metric, margin = curve["metric"], curve["margin"]
    level = f"{round(100 * curve['confidence'])}%"
    parts: list[str] = []
    for m, label in curve["methods"].items():
        if m == TFIDF and m not in curve["enough"]:
            continue
        said: list[str] = []
        if m in curve["enough"]:
            n = curve["enough"][m]
            full = curve["full"][m]["value"]
            said.append(
                f"{n} labels per class is the smallest size whose {metric} is within {margin:g} of the "
                f"full-data model ({full:.3f}) at the {level} lower bound"
                if n is not None
                else f"no measured size comes within {margin:g} of the full-data model's {metric} "
                f"({full:.3f}) at the {level} lower bound"
            )
        if m in curve["beats_tfidf_from"]:
            n = curve["beats_tfidf_from"][m]
            said.append(
                f"it beats TF-IDF with {level} confidence from {n} labels per class on"
                if n is not None
                else "it does not beat TF-IDF with confidence from any measured size on"
            )
        if said:
            parts.append(f"{label[0].upper()}{label[1:]}: " + "; ".join(said) + ".")
    if curve["skipped_points"]:
        parts.append(f"{len(curve['skipped_points'])} points were not trained (budget).")
    return " ".join(parts)
