"""A small project folder for the workbench tests: a tiny BERT built in code and a review CSV."""

from __future__ import annotations

import csv
from pathlib import Path

from helpers import toy_reviews, write_tiny_bert


def make_project(folder: Path, rows: int = 300) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_tiny_bert(folder / "tiny-bert")
    with (folder / "reviews.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["text", "label", "genre"])
        w.writeheader()
        w.writerows(toy_reviews(rows, seed=3))
    return folder


# What the browser test types into the form so a run takes seconds (the template's defaults are for
# real models and real data).
TINY_SETTINGS = {
    "seed": "7",  # with 13 this tiny model sits on its plateau until early stopping ends the run
    "model.max_length": "32",
    "train.learning_rate": "0.003",
    "train.epochs": "8",
    "train.batch_size": "16",
    "evaluate.bootstrap_samples": "200",
}
