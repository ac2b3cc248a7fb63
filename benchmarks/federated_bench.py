"""The federated model against a centralised one (pooled data) and each site's model alone.

Reads a finished federation (``tuneproof federate ... --run-dir R --sites-root S``): the global
model from R's last round checkpoint, each site's prepared splits from S/sites/<site>/work. Then
trains, with the protocol's training settings and as many epochs as the federation's rounds times
its local epochs, one model on the pooled train splits (resuming from its checkpoints if the bench was
interrupted) and, with ``--retrain-alone``, one per site on its own (by default it reuses the models
each site trained alone in the federation's test step, S/sites/<site>/work/alone, and trains one
only where a site has none), and scores every
model on every site's own test split (the same rows for all), with 95% bootstrap intervals and the
paired difference federated - other (same resamples on both sides); pooled over sites by a bootstrap
stratified by site. Round times and bytes come from R/federation.json. Writes a Markdown table and
the figures as JSON:

    python benchmarks/federated_bench.py --protocol examples/federated/reviews-3-sites.yaml \
        --run-dir R --sites-root S --out benchmarks/results/federated
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tuneproof.evaluate.bootstrap import bootstrap_indices, percentile_interval
from tuneproof.federated.checkpoints import latest_round
from tuneproof.federated.site import Site, alone_arrays
from tuneproof.protocol import load_protocol
from tuneproof.train.fit import build_features, fit


def _train(
    site: Site, train: pd.DataFrame, val: pd.DataFrame, epochs: float, work: Path, resume: bool = False
) -> Any:
    ctx = site.ctx
    protocol = ctx.protocol.model_copy(
        update={"train": ctx.protocol.train.model_copy(update={"epochs": epochs})}
    )
    features = build_features(ctx.task, {"train": train, "validation": val}, ctx.tokenizer, ctx.cache_dir)
    return fit(ctx.task, protocol, ctx.ref, ctx.tokenizer, features, work, ctx.precision, resume=resume).model


def _correct(site: Site, model: Any, test: pd.DataFrame) -> np.ndarray:
    ctx = site.ctx
    feats = ctx.task.features(test, ctx.tokenizer, ctx.cache_dir)
    pad = ctx.tokenizer.pad_token_id or 0
    probs = ctx.task.predict(model, feats, pad, ctx.protocol.evaluate.batch_size, ctx.precision)
    y = np.array([f["labels"] for f in feats])
    return (np.asarray(probs).argmax(1) == y).astype(np.float64)


def _summary(per_site: dict[str, np.ndarray], resamples: dict[str, np.ndarray]) -> dict[str, Any]:
    """Accuracy per site and pooled (stratified by site) from per-row correctness, with intervals."""
    out: dict[str, Any] = {}
    for name, c in per_site.items():
        reps = c[resamples[name]].mean(1)
        out[name] = (float(c.mean()), *percentile_interval(reps, 0.95))
    n = sum(len(c) for c in per_site.values())
    pooled_reps = sum(c[resamples[s]].sum(1) for s, c in per_site.items()) / n
    out["pooled"] = (
        float(sum(c.sum() for c in per_site.values()) / n),
        *percentile_interval(pooled_reps, 0.95),
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--sites-root", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument(
        "--retrain-alone",
        action="store_true",
        help="train each site alone here (fit) instead of reusing the federation's site-alone models",
    )
    args = parser.parse_args()
    fed = load_protocol(args.protocol).protocol.federated
    assert fed is not None
    names = [s.name for s in fed.sites]
    sites = {n: Site.open(args.protocol, n, args.sites_root / "sites" / n / "work") for n in names}
    latest = latest_round(args.run_dir / "checkpoints")
    assert latest is not None, "no finished round in the run folder"
    epochs = float(fed.rounds * (fed.local_epochs or 1))
    work = args.out.parent / "federated-bench-work"
    first = sites[names[0]]
    split = {n: s.prepared.splits for n, s in sites.items()}
    models: dict[str, Any] = {"federated": first.model(latest[1])}
    seconds: dict[str, float] = {}
    t = time.monotonic()
    models["centralised"] = _train(
        first,
        pd.concat([split[n]["train"] for n in names]),
        pd.concat([split[n]["validation"] for n in names]),
        epochs,
        work / "centralised",
        resume=True,
    )
    seconds["centralised"] = time.monotonic() - t
    for n in names:
        t = time.monotonic()
        if args.retrain_alone:
            models[f"{n} alone"] = _train(
                sites[n], split[n]["train"], split[n]["validation"], epochs, work / n
            )
        else:  # the federation's own site-alone model (beats_site_alone), trained there if missing
            models[f"{n} alone"] = sites[n].model(alone_arrays(sites[n]))
        seconds[f"{n} alone"] = time.monotonic() - t
    correct = {
        m: {n: _correct(sites[n], model, split[n]["test"]) for n in names} for m, model in models.items()
    }
    resamples = {
        n: bootstrap_indices(len(split[n]["test"]), args.samples, 1000 + i) for i, n in enumerate(names)
    }
    table = {m: _summary(c, resamples) for m, c in correct.items()}
    diffs = {
        m: _summary({n: correct["federated"][n] - c[n] for n in names}, resamples)
        for m, c in correct.items()
        if m != "federated"
    }
    state = json.loads((args.run_dir / "federation.json").read_text())
    rounds = [
        {k: r[k] for k in ("round", "seconds", "bytes_sent", "bytes_received", "answered")}
        for r in state["rounds"]
    ]
    figures = {"accuracy": table, "federated_minus": diffs, "rounds": rounds, "train_seconds": seconds}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(figures, indent=1))
    cols = [*names, "pooled"]
    fmt = lambda v: f"{v[0]:.3f} [{v[1]:.3f}, {v[2]:.3f}]"  # noqa: E731
    lines = [
        "| model | " + " | ".join(f"accuracy at {c}" for c in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    lines += [f"| {m} | " + " | ".join(fmt(v[c]) for c in cols) + " |" for m, v in table.items()]
    lines += ["", "| federated minus | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {m} | " + " | ".join(fmt(v[c]) for c in cols) + " |" for m, v in diffs.items()]
    lines += ["", "| round | seconds | bytes sent | bytes received | sites |", "|---|---|---|---|---|"]
    lines += [
        f"| {r['round']} | {r['seconds']:.0f} | {r['bytes_sent']:,} | {r['bytes_received']:,} | "
        f"{', '.join(r['answered'])} |"
        for r in rounds
    ]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
