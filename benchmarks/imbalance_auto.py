"""Where rebalancing starts to pay: Rotten Tomatoes with one class subsampled to 1:r.

    PYTHONPATH=. python -m benchmarks.imbalance_auto [--ratios 1 1.5 2 3 4 6 8 16 30] [--seeds 13 14 15]
                                                     [--no-embeddings]

For each seed and ratio r: a stratified 80/20 split of the de-duplicated snippets, then 'fresh'
subsampled to 1/r of 'rotten' in both splits (the test split keeps the skew, as real data would).
Each classifier is fitted three times (no rebalancing, class weights n / (k * count), random
oversampling of the rare class to the common one's count) and scored by macro-F1 on the same test
rows with paired bootstrap differences against no rebalancing. Classifiers: TF-IDF + logistic
regression, and logistic regression on frozen all-MiniLM-L6-v2 embeddings (a stand-in for the
fine-tuned encoder, which is too slow to refit this often on two shared cores).

`imbalance.auto_ratio` (tuneproof/protocol/schema.py AUTO_RATIO) was set from these results: the two
classifiers disagree below severe imbalance (TF-IDF gains from 1:2, the embedding classifier loses at
1:1.5-1:4), so auto weights only from 10:1 (docs/label-quality.md).
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

from benchmarks.data import LABELS, rotten_tomatoes  # noqa: E402
from tuneproof.evaluate.bootstrap import bootstrap_indices, estimate, paired_difference  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "imbalance_auto.json"
STRATEGIES = ("none", "class_weights", "oversample")
CONFIDENCE = 0.95
BOOTSTRAP = 1000
RARE = "fresh"


def skewed(idx: np.ndarray, y: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """``idx`` with the rare class subsampled to 1/ratio of the other's count."""
    rare, common = idx[y[idx] == 0], idx[y[idx] == 1]
    keep = max(2, round(len(common) / ratio))
    return np.sort(np.concatenate([common, rng.choice(rare, size=min(keep, len(rare)), replace=False)]))


def _fit(kind: str, strategy: str, train: np.ndarray, y: np.ndarray, feats: Any, seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression

    rows = train
    weight = None
    counts = np.bincount(y[train], minlength=2)
    if strategy == "oversample":
        rng = np.random.default_rng(seed)
        rare_rows = train[y[train] == counts.argmin()]
        rows = np.concatenate([train, rng.choice(rare_rows, size=counts.max() - counts.min(), replace=True)])
    elif strategy == "class_weights":
        weight = (len(train) / (2 * counts))[y[train]]
    c = 4.0 if kind == "tfidf_logreg" else 1.0
    clf = LogisticRegression(C=c, max_iter=3000, random_state=seed)
    return clf.fit(feats[rows], y[rows], sample_weight=weight)


def _macro_f1_stat(pred: np.ndarray, truth: np.ndarray) -> Any:
    def stat(idx: np.ndarray) -> np.ndarray:
        p, t = pred[idx], truth[idx]
        out = np.zeros(len(idx))
        for k in (0, 1):
            tp = ((p == k) & (t == k)).sum(1)
            fp = ((p == k) & (t != k)).sum(1)
            fn = ((p != k) & (t == k)).sum(1)
            out += np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
        return out / 2

    return stat


def _diff(d: dict[str, Any]) -> str:
    return f" ({d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}])"


def run(
    ratios: Sequence[float], seeds: Sequence[int], embeddings: bool, tfidf: bool = True
) -> list[dict[str, Any]]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.model_selection import train_test_split

    df = rotten_tomatoes()
    texts = df["text"].tolist()
    y = np.array([0 if lab == RARE else 1 for lab in df["label"]])
    assert LABELS[0] == RARE
    emb = None
    if embeddings:
        from benchmarks.rt_embeddings import embed

        emb = embed(texts)
    out = []
    for seed in seeds:
        tr, te = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=seed)
        for ratio in ratios:
            rng = np.random.default_rng(seed * 1000 + int(ratio * 10))
            train, test = skewed(tr, y, ratio, rng), skewed(te, y, ratio, rng)
            idx = bootstrap_indices(len(test), BOOTSTRAP, seed)
            kinds: dict[str, Any] = {}
            feature_sets: dict[str, Any] = {}
            if tfidf:
                vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
                feature_sets["tfidf_logreg"] = vec.fit(np.asarray(texts, dtype=object)[train]).transform(
                    texts
                )
            if emb is not None:
                feature_sets["minilm_embeddings_logreg"] = emb
            for kind, feats in feature_sets.items():
                preds = {s: _fit(kind, s, train, y, feats, seed).predict(feats[test]) for s in STRATEGIES}
                stats = {s: _macro_f1_stat(p, y[test]) for s, p in preds.items()}
                kinds[kind] = {
                    "macro_f1": {s: estimate(f, idx, CONFIDENCE) for s, f in stats.items()},
                    "vs_none": {
                        s: paired_difference(stats[s], stats["none"], idx, CONFIDENCE) for s in STRATEGIES[1:]
                    },
                    "rare_recall": {s: float((p[y[test] == 0] == 0).mean()) for s, p in preds.items()},
                }
            out.append(
                {
                    "seed": seed,
                    "ratio": ratio,
                    "train_rows": {"rare": int((y[train] == 0).sum()), "common": int((y[train] == 1).sum())},
                    "test_rows": {"rare": int((y[test] == 0).sum()), "common": int((y[test] == 1).sum())},
                    "models": kinds,
                }
            )
            r = out[-1]
            for kind, m in r["models"].items():
                cells = "  ".join(
                    f"{s} {m['macro_f1'][s]['value']:.3f}" + (_diff(m["vs_none"][s]) if s != "none" else "")
                    for s in STRATEGIES
                )
                print(
                    f"seed {seed} 1:{ratio:g} {kind:26s} train rare {r['train_rows']['rare']:5d}  {cells}",
                    flush=True,
                )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ratios", type=float, nargs="+", default=[1, 1.5, 2, 3, 4, 6, 8, 16, 30])
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 14, 15])
    parser.add_argument("--no-embeddings", action="store_true")
    parser.add_argument("--no-tfidf", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = run(args.ratios, args.seeds, not args.no_embeddings, not args.no_tfidf)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
