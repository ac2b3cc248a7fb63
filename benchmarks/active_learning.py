"""Does `tuneproof suggest` beat random picking? A simulation on labelled Rotten Tomatoes snippets.

    PYTHONPATH=. python -m benchmarks.active_learning [--seeds 13 14 15 16 17] [--start 100]
                                                      [--batch 50] [--rounds 8] [--method margin]

For each seed: a fixed test split (2,000 snippets), a seeded random start of ``--start`` labelled
rows, and the rest of the training split as the unlabelled pool. Two arms start from the same rows;
each round one arm labels the ``--batch`` pool texts the current model is least sure about (the same
ranking code `tuneproof suggest` uses: tuneproof.suggest.rank), the other labels ``--batch`` random
pool texts; both refit and are scored on the same test rows. Reported per round: each arm's
accuracy with a 95% bootstrap interval (seed 13's test rows) and the paired difference, plus the
mean difference over seeds with its range. The model is TF-IDF + logistic regression, refitted every
round: fine-tuning the encoder each round is too slow to repeat here, so this measures the ranking
rule, not the fine-tuned model's own uncertainty.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.data import LABELS, rt_split  # noqa: E402
from tuneproof.evaluate.baselines import tfidf_logreg_probs  # noqa: E402
from tuneproof.evaluate.bootstrap import bootstrap_indices, estimate, paired_difference  # noqa: E402
from tuneproof.suggest import rank  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "active_learning.json"
CONFIDENCE = 0.95
BOOTSTRAP = 1000


def _stat(correct: np.ndarray) -> Any:
    return lambda idx: correct[idx].mean(axis=1)


def one_seed(
    seed: int, start: int, batch: int, rounds: int, method: str, n_test: int
) -> list[dict[str, Any]]:
    train, test = rt_split(n_train=10**9, n_test=n_test, seed=seed)
    texts = np.asarray(train["text"].tolist(), dtype=object)
    y = np.array([LABELS.index(x) for x in train["label"]])
    y_test = np.array([LABELS.index(x) for x in test["label"]])
    test_texts = test["text"].tolist()
    rng = np.random.default_rng(seed)
    first = rng.choice(len(y), size=start, replace=False)
    labelled = {"suggested": list(first), "random": list(first)}
    idx = bootstrap_indices(len(test), BOOTSTRAP, seed)
    out = []
    for r in range(rounds + 1):
        correct: dict[str, np.ndarray] = {}
        pool_probs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for arm, rows in labelled.items():
            rows_a = np.asarray(rows)
            pool = np.setdiff1d(np.arange(len(y)), rows_a)
            both = tfidf_logreg_probs(
                texts[rows_a].tolist(), y[rows_a], [*test_texts, *texts[pool].tolist()], 2, seed
            )
            correct[arm] = (both[: len(test_texts)].argmax(1) == y_test).astype(np.float64)
            pool_probs[arm] = (pool, both[len(test_texts) :])
        out.append(
            {
                "round": r,
                "labelled": len(labelled["random"]),
                "accuracy": {arm: estimate(_stat(c), idx, CONFIDENCE) for arm, c in correct.items()},
                "suggested - random": paired_difference(
                    _stat(correct["suggested"]), _stat(correct["random"]), idx, CONFIDENCE
                ),
            }
        )
        if r == rounds:
            break
        pool, probs = pool_probs["suggested"]
        labelled["suggested"] += pool[rank(probs, batch, method)].tolist()  # type: ignore[arg-type]
        pool, _ = pool_probs["random"]
        labelled["random"] += rng.choice(pool, size=batch, replace=False).tolist()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 14, 15, 16, 17])
    parser.add_argument("--start", type=int, default=100)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--method", choices=["margin", "entropy"], default="margin")
    parser.add_argument("--test-rows", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    per_seed = {
        s: one_seed(s, args.start, args.batch, args.rounds, args.method, args.test_rows) for s in args.seeds
    }
    first = per_seed[args.seeds[0]]
    print(f"seed {args.seeds[0]}: accuracy [95% interval] per round; paired difference suggested - random")
    for row in first:
        acc = row["accuracy"]
        d = row["suggested - random"]
        print(
            f"  round {row['round']} ({row['labelled']} labels): suggested {acc['suggested']['value']:.4f} "
            f"[{acc['suggested']['low']:.4f}, {acc['suggested']['high']:.4f}]  random "
            f"{acc['random']['value']:.4f} [{acc['random']['low']:.4f}, {acc['random']['high']:.4f}]  "
            f"diff {d['diff']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"
        )
    print(f"over {len(args.seeds)} seeds: mean difference suggested - random (min, max); seeds where > 0")
    summary = []
    for r in range(args.rounds + 1):
        diffs = np.array([per_seed[s][r]["suggested - random"]["diff"] for s in args.seeds])
        wins = int((diffs > 0).sum())
        summary.append(
            {"round": r, "mean": float(diffs.mean()), "min": float(diffs.min()), "max": float(diffs.max())}
        )
        print(
            f"  round {r}: {diffs.mean():+.4f} ({diffs.min():+.4f}, {diffs.max():+.4f}); "
            f"{wins} of {len(diffs)}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "seeds": per_seed, "summary": summary}
        )
        + "\n"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
