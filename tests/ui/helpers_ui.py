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


def add_chat_files(folder: Path, rows: int = 60) -> Path:
    """A tiny Llama and templated question/answer chats (tests/generative_helpers.py) in the project."""
    from generative_helpers import chat_rows, write_jsonl, write_tiny_llama

    write_tiny_llama(folder / "llama")
    write_jsonl(folder / "chat.jsonl", chat_rows(rows))
    return folder


# What the sft browser test sets in the form, on top of the sft template, so a run takes seconds:
# the templated chats are near-duplicates of each other, so that cleaning stage is off.
SFT_SETTINGS = {
    "name": "sft-ui-a",
    "seed": "5",
    "model.max_length": "40",
    "model.gguf_file": "",  # the template's GGUF file belongs to SmolLM2, not to the tiny Llama
    "split.train": "0.6",
    "split.validation": "0.1",
    "split.test": "0.3",
    "train.learning_rate": "0.01",
    "train.max_steps": "",
    "train.epochs": "4",
    "train.batch_size": "8",
    "generation.max_new_tokens": "6",
    "generation.test_examples": "8",
    "generation.samples_in_report": "1",
    "evaluate.bootstrap_samples": "200",
}
SFT_SELECTS = {
    "train.method": '"full"',
    "train.scheduler": '"constant"',
    "train.precision": '"fp32"',
    "split.enforce_minimums": "false",
    "leakage.near": "false",
    "cleaning.near_duplicates.enabled": "false",
}
