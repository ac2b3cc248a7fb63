"""SetFit at a few labels per class against full fine-tuning on every training row and TF-IDF, on
the main job's Rotten Tomatoes test split, with intervals over test rows and training subsets.

    tuneproof run benchmarks/monitor-review-sentiment.yaml --output-dir runs   # full fine-tuning, 1 epoch
    python benchmarks/few_shot.py runs/review-sentiment-monitor-<stamp> --sizes 8 16 32 --repeats 3

The splits are those of examples/review-learning-curve.yaml (the main job's data, cleaning, split
and seed); the reference run must have the same test split (its manifest's hash is checked). SetFit
and TF-IDF points are trained by the learning curve's own code (``tuneproof.curve``: nested,
stratified subsets, the on-disk point cache, so an interrupted measurement resumes) and compared
with the reference run's test probabilities by the curve's two-level bootstrap (paired on test
rows). Results go to benchmarks/results/few_shot.json and are printed as a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "examples" / "review-learning-curve.yaml"
OUT = ROOT / "benchmarks" / "results" / "few_shot.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "reference",
        type=Path,
        nargs="?",
        default=None,
        help="a finished full fine-tuning run on the same splits; without it, full fine-tuning on every "
        "training row is trained here (--full-epochs) as the curve's full-split 'protocol' point",
    )
    parser.add_argument("--full-epochs", type=float, default=1.0, help="epochs of the all-rows fine-tuning")
    parser.add_argument("--max-length", type=int, default=None, help="override model.max_length (time)")
    parser.add_argument(
        "--test-rows",
        type=int,
        default=None,
        help="score every arm on the same stratified random subsample of the test split (time)",
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget-seconds", type=float, default=None)
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["setfit", "linear_probe", "tfidf_logreg"],
        choices=["protocol", "setfit", "linear_probe", "tfidf_logreg"],
        help="protocol: full fine-tuning at n per class (the curve's own arm, min_steps); "
        "linear_probe: logistic regression on the frozen (untuned) body's sentence embeddings",
    )
    parser.add_argument(
        "--setfit-max-steps",
        type=int,
        default=None,
        help="cap SetFit's body steps per point (pairs = steps x batch size) to bound the wall time",
    )
    parser.add_argument(
        "--splits-from-reference",
        action="store_true",
        help="read the splits from the reference run's data/ (same hashes) instead of preparing them again",
    )
    parser.add_argument(
        "--only-repeats",
        type=int,
        nargs="+",
        default=None,
        help="train only these repeats (the same subsets as in a full run; processes share the cache)",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    from tuneproof.context import build_context
    from tuneproof.curve.points import FULL, PointCache, compute_points, context_key
    from tuneproof.curve.run import method_protocol
    from tuneproof.curve.stats import CurveBootstrap, difference, summarize_point
    from tuneproof.data.prepare import split_hash
    from tuneproof.evaluate.baselines import tfidf_logreg_probs
    from tuneproof.evaluate.linear_probe import linear_probe_probs
    from tuneproof.protocol import load_protocol
    from tuneproof.train.features import DEFAULT_CACHE
    from tuneproof.train.fit import build_features, fit

    loaded = load_protocol(PROTOCOL)
    if args.max_length is not None:
        model = loaded.protocol.model.model_copy(update={"max_length": args.max_length})
        loaded = dataclasses.replace(loaded, protocol=loaded.protocol.model_copy(update={"model": model}))
    ctx = build_context(loaded, loaded.base_dir, None)
    if args.splits_from_reference:
        if args.reference is None:
            sys.exit("--splits-from-reference needs a reference run")
        splits = {n: pd.read_parquet(args.reference / "data" / f"{n}.parquet") for n in ("train", "test")}
        test_hash = split_hash(splits["test"])
    else:
        prepared = ctx.prepare()
        splits = dict(prepared.splits)
        test_hash = prepared.report["splits"]["test"]["sha256"]
    ctx.task.labels = list(ctx.protocol.data.labels or [])
    if args.reference is not None:
        reference = json.loads((args.reference / "manifest.json").read_text())
        if reference["splits"]["test"] != test_hash:
            sys.exit(f"{args.reference}: its test split is not this protocol's; compare on the same rows")
    full_test_rows = len(splits["test"])
    if args.test_rows is not None and args.test_rows < full_test_rows:
        # One stratified subsample, fixed by the seed, scored by every arm (paired on the same rows).
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(
            np.arange(full_test_rows),
            train_size=args.test_rows,
            stratify=splits["test"]["label"],
            random_state=ctx.protocol.seed,
        )
        splits["test"] = splits["test"].iloc[np.sort(keep)].reset_index(drop=True)
    splits = {k: splits[k] for k in ("train", "test")}
    features = build_features(ctx.task, splits, ctx.tokenizer, ctx.cache_dir)
    labels = ctx.task.labels
    y_train = np.array([f["labels"] for f in features["train"]])
    y_test = np.array([f["labels"] for f in features["test"]])
    test = splits["test"]
    ref_probs: np.ndarray | None = None
    if args.reference is not None:
        ref_pred = pd.read_parquet(args.reference / "predictions" / "test.parquet").set_index("row_id")
        ref_probs = ref_pred.loc[test["row_id"], [f"prob_{lab}" for lab in labels]].to_numpy(np.float64)
    spec = ctx.protocol.evaluate.learning_curve
    assert spec is not None
    if args.setfit_max_steps is not None:
        capped = ctx.protocol.train.setfit.model_copy(update={"max_steps": args.setfit_max_steps})
        ctx.protocol = ctx.protocol.model_copy(
            update={"train": ctx.protocol.train.model_copy(update={"setfit": capped})}
        )
    frozen: dict[str, np.ndarray] = {}

    def frozen_embeddings(split: str, rows: np.ndarray) -> np.ndarray:
        """The untuned body's (normalised, mean-pooled) embeddings; each text embedded once."""
        from tuneproof.train.setfit_fit import load_body

        texts = splits[split]["text"].to_numpy()[rows].tolist()
        missing = [t for t in dict.fromkeys(texts) if t not in frozen]
        if missing:
            body = load_body(ctx.ref, ctx.protocol.model.max_length)
            got = body.encode(missing, batch_size=64, convert_to_numpy=True, show_progress_bar=False)
            frozen.update(zip(missing, np.asarray(got, dtype=np.float32), strict=True))
        return np.stack([frozen[t] for t in texts])

    pad_id = ctx.tokenizer.pad_token_id or 0
    seconds: dict[str, list[float]] = {}

    def train_point(method: str, rows: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        if method == "tfidf_logreg":
            probs = tfidf_logreg_probs(
                splits["train"]["text"].iloc[rows].tolist(),
                y_train[rows],
                test["text"].tolist(),
                len(labels),
                ctx.protocol.seed,
            )
        elif method == "linear_probe":
            probs = linear_probe_probs(
                frozen_embeddings("train", rows),
                y_train[rows],
                frozen_embeddings("test", np.arange(len(test))),
                len(labels),
                ctx.protocol.seed,
            )
        else:
            proto = method_protocol(ctx.protocol, method, len(rows), spec)
            if len(rows) == len(y_train):  # the all-rows fine-tuning
                proto = proto.model_copy(
                    update={"train": proto.train.model_copy(update={"epochs": args.full_epochs})}
                )
            sub = {"train": [features["train"][i] for i in rows]}
            work = Path("/tmp") / f"few-shot-{method}-{len(rows)}"
            result = fit(ctx.task, proto, ctx.ref, ctx.tokenizer, sub, work, ctx.precision, splits=splits)
            probs = ctx.task.predict(result.model, features["test"], pad_id, 64, ctx.precision)
        seconds.setdefault(f"{method} n={len(rows) // len(labels)}", []).append(time.perf_counter() - started)
        print(f"[few-shot] {method} on {len(rows)} rows: {time.perf_counter() - started:.0f}s", flush=True)
        return np.asarray(probs, dtype=np.float64)

    context = context_key(
        {
            "benchmark": "few_shot",
            "splits": {k: split_hash(v) for k, v in splits.items()},
            "model": ctx.ref.name_or_path,
            "max_length": ctx.protocol.model.max_length,
            "seed": ctx.protocol.seed,
            "precision": ctx.precision,
        }
    )
    settings = {
        "protocol": method_protocol(ctx.protocol, "protocol", 0, spec).train.model_dump_json()
        + f"|min_steps={spec.min_steps}|full_epochs={args.full_epochs}",
        "setfit": method_protocol(ctx.protocol, "setfit", 0, spec).train.setfit.model_dump_json(),
        "linear_probe": "frozen body, normalised mean pooling; StandardScaler + LogisticRegression(C=0.5)",
    }
    cache = PointCache((ctx.cache_dir or DEFAULT_CACHE) / "few_shot_benchmark", context, settings)
    points = compute_points(
        y_train,
        args.sizes,
        args.repeats,
        args.methods,
        ctx.protocol.seed,
        cache,
        train_point,
        {
            m: None
            for m in ("tfidf_logreg", "protocol")
            if m in args.methods and not (m == "protocol" and ref_probs is not None)
        },
        args.budget_seconds,
        only_repeats=args.only_repeats,
    )
    boot = CurveBootstrap(y_test, ctx.protocol.evaluate.bootstrap_samples, ctx.protocol.seed)
    conf = ctx.protocol.evaluate.confidence
    if ref_probs is None and FULL in points.probs.get("protocol", {}):
        ref_probs = points.probs["protocol"][FULL][0]
    if ref_probs is None:
        print(
            "[few-shot] no full fine-tuning on all rows (no reference, point not trained): no 'minus full FT'"
        )
    full_ft = boot.point("accuracy", [ref_probs]) if ref_probs is not None else None
    out: dict[str, object] = {
        "reference_run": str(args.reference) if args.reference else "trained here",
        "reference": "full fine-tuning of all-MiniLM-L6-v2 on every training row "
        f"({args.full_epochs:g} epoch)",
        "max_length": ctx.protocol.model.max_length,
        "test_rows": len(y_test),
        "test_rows_of": full_test_rows,
        "train_rows": len(y_train),
        "precision": ctx.precision,
        "setfit_settings": json.loads(settings["setfit"]),
        "linear_probe_settings": settings["linear_probe"],
        "full_fine_tuning": summarize_point(full_ft, conf) if full_ft is not None else None,
        "tfidf_all": summarize_point(boot.point("accuracy", points.probs["tfidf_logreg"][FULL]), conf)
        if FULL in points.probs.get("tfidf_logreg", {})
        else None,
        "points": [],
        "trained": points.trained,
        "cached": points.cached,
        "skipped": points.skipped,
        "seconds_per_point": {k: [round(s, 1) for s in v] for k, v in seconds.items()},
    }
    rows = []
    for n in args.sizes:
        got = {m: points.probs.get(m, {}).get(n) for m in args.methods}
        got = {m: v for m, v in got.items() if v}
        if not got:
            continue
        k = min(len(v) for v in got.values())  # the same repeats on every side, paired by subset
        reps = {m: boot.point("accuracy", v[:k]) for m, v in got.items()}
        entry: dict[str, object] = {"per_class": n, "repeats": k}
        for m, r in reps.items():
            entry[m] = summarize_point(r, conf)
            if full_ft is not None:
                entry[f"{m}_minus_full_ft"] = difference(r, full_ft, conf)
        for first, other in (
            ("setfit", "protocol"),
            ("setfit", "linear_probe"),
            ("setfit", "tfidf_logreg"),
            ("protocol", "linear_probe"),
            ("protocol", "tfidf_logreg"),
        ):
            if first in reps and other in reps:  # paired on test rows and subsets
                entry[f"{first}_minus_{other}"] = difference(reps[first], reps[other], conf)
        out["points"].append(entry)  # type: ignore[attr-defined]
        rows.append(entry)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))

    def iv(d: dict) -> str:  # type: ignore[type-arg]
        key = "value" if "value" in d else "diff"
        return f"{d[key]:.3f} [{d['low']:.3f}, {d['high']:.3f}]"

    if out["full_fine_tuning"]:
        print(f"full fine-tuning (all {len(y_train)} rows): accuracy {iv(out['full_fine_tuning'])}")  # type: ignore[arg-type]
    if out["tfidf_all"]:
        print(f"TF-IDF (all rows): accuracy {iv(out['tfidf_all'])}")  # type: ignore[arg-type]
    for e in rows:
        cells = [f"{k}: {iv(v)}" for k, v in e.items() if isinstance(v, dict)]  # type: ignore[union-attr]
        print(f"{e['per_class']} per class, {e['repeats']} repeats | " + " | ".join(cells))


if __name__ == "__main__":
    main()
