"""Small, fast variants of every example protocol, and what a golden record of one run holds.

One definition shared by ``scripts/record_golden.py`` (which writes ``tests/golden/golden.json``)
and ``tests/integration/test_golden.py`` (which re-runs every variant and compares), so the two can
never drift apart.

Each variant keeps its example's task and the same kind of settings (cleaning, split, leakage,
baselines, slices, early stopping, LoRA, search, generation, gates), on tiny deterministic data
generated here and a tiny model built in code, with a fixed seed, fp32 and one thread. Each runs
through the command line (``python -m tuneproof run``) in a fresh process, as a user runs it.

A record holds only what must not change when the code is refactored: the SHA-256 of every
packaged weights file, every numeric value of ``metrics.json`` (and of ``search/trials.json`` for
the search variant) under its flattened key path, the gate verdicts, the exit code and the status.
``NONDETERMINISTIC`` lists, with reasons, the only values left out.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import io
import json
import math
import os
import platform
import random
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GOLDEN_DIR = Path(__file__).resolve().parent
GOLDEN_FILE = GOLDEN_DIR / "golden.json"
REPO_ROOT = GOLDEN_DIR.parents[1]
TESTS_DIR = GOLDEN_DIR.parent
if str(TESTS_DIR) not in sys.path:  # the shared tiny-model helpers live beside the tests
    sys.path.insert(0, str(TESTS_DIR))

from generative_helpers import write_tiny_llama, write_tiny_t5  # noqa: E402
from image_helpers import near_copy, write_image_folder, write_tiny_vit  # noqa: E402
from task_fixtures import toy_ner, write_conll  # noqa: E402

from helpers import NEGATIVE, NEUTRAL, POSITIVE, write_tiny_bert  # noqa: E402

# Tolerance for metrics on a CPU whose signature has no recorded golden: kernels differ in their
# rounding there, so bits may differ, but a refactor that changes results moves values far more.
FOREIGN_CPU_ABS_TOL = 1e-4

# Values that legitimately differ between two runs of the same code, and why. Matched against the
# flattened key path as a suffix of dot-separated parts ("a.b" matches "x.a.b" and "a.b").
NONDETERMINISTIC: dict[str, str] = {
    "seconds": "wall-clock time of a stage",
    "duration_seconds": "wall-clock time of a search trial",
    "tokens_per_second": "throughput, wall-clock",
    "samples_per_second": "throughput, wall-clock",
    "steps_per_second": "throughput, wall-clock",
    "started": "timestamp",
    "finished": "timestamp",
    "datetime_start": "timestamp",
    "datetime_complete": "timestamp",
    "train_seconds": "wall-clock time of training (training/summary.json)",
}

RUN_ENV = {
    "TUNEPROOF_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "PYTHONHASHSEED": "0",
}


@dataclass(frozen=True)
class Variant:
    name: str
    example: str
    covers: str
    protocol: str  # YAML; relative paths start from the work folder that build_inputs filled


COMMON_TRAIN = "precision: fp32\n  threads: 1"

VARIANTS: tuple[Variant, ...] = (
    Variant(
        name="review-sentiment",
        example="examples/review-sentiment.yaml",
        covers="classification, full fine-tuning: csv.bz2 with keep_if and metadata, NFKC/whitespace "
        "cleaning, exact and near duplicates, conflicting labels dropped, truncation, stratified split, "
        "leakage removal, AdamW + linear warmup + weight decay, early stopping on macro_f1, majority and "
        "TF-IDF baselines, a length slice, min / beats / max (ECE) / slice_min gates",
        protocol=f"""
name: review-sentiment-golden
task: classification
seed: 13
model: {{source: ./bert, max_length: 16}}
data:
  files: [reviews.csv.bz2]
  text_column: text
  label_column: category
  keep_if: {{category: [fresh, rotten]}}
  labels: [fresh, rotten]
  metadata_columns: [movie_name]
cleaning:
  near_duplicates: {{threshold: 0.9, shingle_chars: 5}}
  over_length: truncate
  conflicting_labels: drop
split: {{train: 0.8, validation: 0.1, test: 0.1}}
leakage: {{exact: true, near: true, action: remove}}
train:
  method: full
  optimizer: adamw
  learning_rate: 0.003
  scheduler: linear
  warmup_ratio: 0.06
  epochs: 5
  batch_size: 16
  weight_decay: 0.01
  early_stopping: {{metric: macro_f1, patience: 2}}
  {COMMON_TRAIN}
evaluate:
  confidence: 0.95
  bootstrap_samples: 200
  baselines: [majority, tfidf_logreg]
  slices:
    - {{by: length, edges: [6, 10]}}
gates:
  - {{metric: accuracy, min: 0.6}}
  - {{metric: macro_f1, beats: tfidf_logreg, by: 0.01}}
  - {{metric: ece, max: 0.30}}
  - {{metric: accuracy, slice_min: 0.5}}
""",
    ),
    Variant(
        name="review-sentiment-search",
        example="examples/review-sentiment-search.yaml",
        covers="classification with an Optuna search: TPE sampler, 2 trials (the protocol's own "
        "settings, then one sampled), median pruner, selection on validation macro_f1, the final "
        "training with the chosen values, a small-train / large-test split, two keep_if columns",
        protocol=f"""
name: review-sentiment-search-golden
task: classification
seed: 13
model: {{source: ./bert, max_length: 16}}
data:
  files: [reviews.csv.bz2]
  text_column: text
  label_column: category
  keep_if: {{category: [fresh, rotten], has_plot_and_reviews: ["True"]}}
  labels: [fresh, rotten]
  metadata_columns: [movie_name]
split: {{train: 0.4, validation: 0.2, test: 0.4}}
train:
  method: full
  learning_rate: 0.003
  scheduler: linear
  warmup_ratio: 0.1
  epochs: 4
  batch_size: 16
  weight_decay: 0.0
  eval_every_steps: 3
  {COMMON_TRAIN}
evaluate:
  bootstrap_samples: 200
  baselines: [majority, tfidf_logreg]
  slices:
    - {{by: length, edges: [6, 10]}}
gates:
  - {{metric: accuracy, min: 0.55}}
  - {{metric: accuracy, beats: majority, by: 0.1}}
search:
  sampler: tpe
  metric: macro_f1
  startup_trials: 1
  space:
    train.learning_rate: {{type: float, low: 1.0e-4, high: 1.0e-2, log: true}}
    train.warmup_ratio: {{type: float, low: 0.0, high: 0.2}}
    train.weight_decay: {{type: float, low: 0.0, high: 0.1}}
  budget: {{trials: 2, minutes: 30}}
  pruner: {{type: median, startup_trials: 1, warmup_steps: 3}}
""",
    ),
    Variant(
        name="wnut-ner",
        example="examples/wnut-ner.yaml",
        covers="token classification: CoNLL reader, IOB2 tags, near-duplicate cleaning, 0.7/0.1/0.2 "
        "split, leakage removal, early stopping on entity F1, most-frequent-tag baseline, beats / min gates",
        protocol=f"""
name: wnut-ner-golden
task: token_classification
seed: 13
model: {{source: ./bert, max_length: 24}}
data:
  files: [ner.txt]
  format: conll
  text_column: tokens
  label_column: tags
  tag_scheme: iob2
cleaning:
  near_duplicates: {{threshold: 0.9, shingle_chars: 5}}
split: {{train: 0.7, validation: 0.1, test: 0.2}}
leakage: {{exact: true, near: true, action: remove}}
train:
  method: full
  learning_rate: 0.003
  scheduler: linear
  warmup_ratio: 0.1
  epochs: 8
  batch_size: 16
  weight_decay: 0.01
  early_stopping: {{metric: f1, patience: 2}}
  {COMMON_TRAIN}
evaluate:
  bootstrap_samples: 200
  baselines: [most_frequent_tag]
gates:
  - {{metric: f1, beats: most_frequent_tag, by: 0.05}}
  - {{metric: f1, min: 0.20}}
""",
    ),
    Variant(
        name="word-pleasantness",
        example="examples/word-pleasantness.yaml",
        covers="regression: csv with a numeric label, short texts, near duplicates left to the leakage "
        "check, which removes them from validation and test; early stopping on rmse, mean and TF-IDF "
        "ridge baselines, beats (lower is better) / min gates",
        protocol=f"""
name: word-pleasantness-golden
task: regression
seed: 13
model: {{source: ./bert, max_length: 16}}
data:
  files: [pleasantness.csv]
  text_column: word
  label_column: pleasantness
# Unlike the example, near duplicates are left in the data, so the leakage check finds and removes
# them from the evaluation splits (with de-duplication on, as in every example, it finds none).
cleaning:
  near_duplicates: {{enabled: false}}
split: {{train: 0.8, validation: 0.1, test: 0.1}}
leakage: {{exact: true, near: true, action: remove}}
train:
  method: full
  learning_rate: 0.003
  scheduler: linear
  warmup_ratio: 0.06
  epochs: 10
  batch_size: 16
  weight_decay: 0.01
  early_stopping: {{metric: rmse, patience: 2}}
  {COMMON_TRAIN}
evaluate:
  bootstrap_samples: 200
  baselines: [mean, tfidf_ridge]
gates:
  - {{metric: rmse, beats: tfidf_ridge, by: 0.02}}
  - {{metric: spearman, min: 0.5}}
""",
    ),
    Variant(
        name="word-categories",
        example="examples/word-categories.yaml",
        covers="multi-label: csv with ';'-separated labels (none, one or several), leakage removal, "
        "early stopping on validation loss (the default), per-label thresholds tuned on validation, "
        "majority and TF-IDF baselines, beats / min gates",
        protocol=f"""
name: word-categories-golden
task: multilabel
seed: 13
model: {{source: ./bert, max_length: 16}}
data:
  files: [categories.csv]
  text_column: word
  label_column: labels
  label_separator: ";"
  labels: [film, negative, positive]
split: {{train: 0.8, validation: 0.1, test: 0.1}}
leakage: {{exact: true, near: true, action: remove}}
train:
  method: full
  learning_rate: 0.003
  scheduler: linear
  warmup_ratio: 0.06
  epochs: 8
  batch_size: 16
  weight_decay: 0.01
  early_stopping: {{patience: 2}}
  {COMMON_TRAIN}
evaluate:
  bootstrap_samples: 200
  baselines: [majority, tfidf_logreg]
gates:
  - {{metric: micro_f1, beats: tfidf_logreg, by: 0.05}}
  - {{metric: macro_f1, min: 0.30}}
""",
    ),
    Variant(
        name="abstract-titles-sft",
        example="examples/abstract-titles-sft.yaml",
        covers="sft on prompt/completion rows in the evals format (messages in `input`, the answer in "
        "`ideal`, some as one-element lists): chat template, assistant-only loss, over-length rows "
        "dropped, LoRA (r 16, alpha 32, dropout) merged at packaging, cosine warmup, max_steps with "
        "gradient accumulation and step-wise validation, greedy generation scored against the base model",
        protocol=f"""
name: abstract-titles-sft-golden
task: sft
seed: 13
model: {{source: ./llama, max_length: 40}}
data:
  files: [sft.jsonl]
  text_column: input
  label_column: ideal
cleaning:
  over_length: drop
  max_removed_fraction: 0.3  # the variant drops over-length rows on purpose
# A smoke-sized variant: below the default floors, gates on fewer rows are undecidable.
split: {{train: 0.8, validation: 0.1, test: 0.1, enforce_minimums: false}}
train:
  method: lora
  lora: {{r: 16, alpha: 32, dropout: 0.05}}
  learning_rate: 0.02
  scheduler: cosine
  warmup_ratio: 0.1
  max_steps: 8
  batch_size: 4
  gradient_accumulation: 2
  eval_every_steps: 4
  {COMMON_TRAIN}
evaluate:
  bootstrap_samples: 200
  batch_size: 16
generation:
  max_new_tokens: 6
  batch_size: 8
  samples_in_report: 3
gates:
  - {{metric: rouge_l, beats: base_model, by: 0.0}}
  - {{metric: perplexity, beats: base_model}}
""",
    ),
    Variant(
        name="dapt-materials",
        example="examples/dapt-materials.yaml",
        covers="dapt: a jsonl text column packed into blocks, general text from a csv.bz2 column with "
        "max_eval_blocks (forgetting), LoRA, cosine warmup, max_steps with gradient accumulation, "
        "domain and general perplexity against the base model",
        protocol=f"""
name: dapt-materials-golden
task: dapt
seed: 13
model: {{source: ./llama, max_length: 24}}
data:
  files: [abstracts.jsonl]
  text_column: abstract
# A smoke-sized variant: below the default floors, gates on fewer rows are undecidable.
split: {{train: 0.8, validation: 0.1, test: 0.1, enforce_minimums: false}}
dapt:
  block_size: 24
  general_text: [general.csv.bz2]
  general_text_column: text
  max_eval_blocks: 6
train:
  method: lora
  lora: {{r: 16, alpha: 32}}
  learning_rate: 0.01
  scheduler: cosine
  warmup_ratio: 0.1
  max_steps: 8
  batch_size: 4
  gradient_accumulation: 2
  eval_every_steps: 4
  {COMMON_TRAIN}
evaluate:
  bootstrap_samples: 200
  batch_size: 8
gates:
  - {{metric: perplexity, beats: base_model}}
  - {{metric: general_perplexity, beats: base_model, by: -2.0}}
""",
    ),
    Variant(
        name="seq2seq-titles",
        example="docs/protocols/seq2seq-titles.yaml",
        covers="seq2seq on a tiny T5: source/target columns of a jsonl, full fine-tuning, source and "
        "target truncation lengths, greedy generation scored with ROUGE-L and chrF against the base model",
        protocol=f"""
name: seq2seq-titles-golden
task: seq2seq
seed: 13
model: {{source: ./t5, max_length: 16}}
data:
  files: [titles.jsonl]
  text_column: abstract
  label_column: title
# A smoke-sized variant: below the default floors, gates on fewer rows are undecidable.
split: {{train: 0.8, validation: 0.1, test: 0.1, enforce_minimums: false}}
train:
  method: full
  learning_rate: 0.01
  epochs: 3
  batch_size: 8
  {COMMON_TRAIN}
evaluate:
  bootstrap_samples: 200
generation:
  max_new_tokens: 6
  max_target_length: 8
  samples_in_report: 3
gates:
  - {{metric: rouge_l, beats: base_model, by: 0.05}}
  - {{metric: chrf, beats: base_model}}
""",
    ),
    Variant(
        name="review-fewshot-setfit",
        example="examples/review-fewshot-setfit.yaml",
        covers="classification with train.method setfit: contrastive pairs on a sentence-transformers "
        "body (a plain BERT folder, mean pooling), a logistic-regression head packaged as safetensors, "
        "a small-train / large-test split, majority and TF-IDF baselines, min / beats gates",
        protocol=f"""
name: review-fewshot-setfit-golden
task: classification
seed: 13
model: {{source: ./bert, max_length: 16}}
data:
  files: [reviews.csv.bz2]
  text_column: text
  label_column: category
  keep_if: {{category: [fresh, rotten]}}
  labels: [fresh, rotten]
  metadata_columns: [movie_name]
split: {{train: 0.2, validation: 0.0, test: 0.8}}
leakage: {{exact: true, near: true, action: remove}}
train:
  method: setfit
  setfit: {{num_iterations: 4, epochs: 1, batch_size: 16, learning_rate: 5.0e-4}}
  {COMMON_TRAIN}
evaluate:
  bootstrap_samples: 200
  baselines: [majority, tfidf_logreg]
gates:
  - {{metric: accuracy, min: 0.55}}
  - {{metric: accuracy, beats: tfidf_logreg}}
""",
    ),
    Variant(
        name="review-learning-curve",
        example="examples/review-learning-curve.yaml",
        covers="classification with evaluate.learning_curve: nested stratified subsets (4 and 8 per "
        "class, 2 repeats), full fine-tuning with min_steps, SetFit and TF-IDF side by side, the full "
        "split's point from the run's own model, two-level bootstrap intervals and the answers",
        protocol=f"""
name: review-learning-curve-golden
task: classification
seed: 13
model: {{source: ./bert, max_length: 16}}
data:
  files: [reviews.csv.bz2]
  text_column: text
  label_column: category
  keep_if: {{category: [fresh, rotten]}}
  labels: [fresh, rotten]
  metadata_columns: [movie_name]
split: {{train: 0.8, validation: 0.1, test: 0.1}}
train:
  method: full
  learning_rate: 0.003
  epochs: 3
  batch_size: 16
  early_stopping: {{metric: macro_f1, patience: 2}}
  setfit: {{num_iterations: 4, batch_size: 16, learning_rate: 5.0e-4}}
  {COMMON_TRAIN}
evaluate:
  bootstrap_samples: 200
  baselines: [majority, tfidf_logreg]
  learning_curve:
    sizes: [4, 8]
    repeats: 2
    methods: [protocol, setfit, tfidf_logreg]
    min_steps: 6
    margin: 0.05
gates:
  - {{metric: accuracy, min: 0.55}}
""",
    ),
    Variant(
        name="fashion-mnist-images",
        example="examples/fashion-mnist-images.yaml",
        covers="image_classification on a tiny ViT: an ImageFolder of tinted noise with near copies "
        "planted (near de-duplication removes them), seeded augmentation (flip, rotation, crop, colour), "
        "early stopping on macro_f1, majority and linear-probe baselines, beats / min gates",
        protocol=f"""
name: fashion-mnist-images-golden
task: image_classification
seed: 13
model: {{source: ./vit}}
data: {{files: [images]}}
images:
  near_duplicates: {{hash: phash, hash_size: 8, max_distance: 2}}
  augment:
    hflip: 0.5
    rotation: {{degrees: 10, p: 0.5}}
    scale_crop: {{scale: [0.8, 1.0], p: 0.5}}
    color_jitter: {{brightness: 0.1, contrast: 0.2, p: 0.5}}
split: {{train: 0.6, validation: 0.2, test: 0.2, enforce_minimums: false}}
leakage: {{exact: true, near: true, action: remove}}
train:
  method: full
  learning_rate: 0.003
  epochs: 3
  batch_size: 16
  early_stopping: {{metric: macro_f1, patience: 2}}
  {COMMON_TRAIN}
evaluate: {{bootstrap_samples: 200, baselines: [majority, linear_probe]}}
gates:
  - {{metric: accuracy, beats: majority, by: 0.1}}
  - {{metric: accuracy, beats: linear_probe, by: -0.5}}
""",
    ),
    Variant(
        name="review-sentiment-dp",
        example="examples/review-sentiment-dp.yaml",
        covers="classification under DP-SGD (Opacus): head-only, Poisson sampling, the noise multiplier "
        "Opacus picks for a target epsilon on the RDP accountant, per-example clipping, a grouped split "
        "without validation, the membership audit, and epsilon / membership_auc gates",
        protocol=f"""
name: review-sentiment-dp-golden
task: classification
seed: 13
model: {{source: ./bert, max_length: 16}}
data:
  files: [reviews.csv.bz2]
  text_column: text
  label_column: category
  keep_if: {{category: [fresh, rotten]}}
  labels: [fresh, rotten]
  metadata_columns: [movie_name]
cleaning: {{over_length: truncate}}
split: {{train: 0.7, validation: 0.0, test: 0.3, group_by: movie_name, enforce_minimums: false}}
train:
  method: head
  optimizer: adamw
  learning_rate: 0.05
  scheduler: constant
  epochs: 2
  batch_size: 32
  weight_decay: 0.0
  {COMMON_TRAIN}
privacy:
  dp_sgd: {{target_epsilon: 8, delta: 1.0e-5, max_grad_norm: 1.0, accountant: rdp}}
  audit: {{max_rows: 100, bootstrap_samples: 200}}
evaluate: {{bootstrap_samples: 200, baselines: [majority]}}
gates:
  - {{metric: epsilon, max: 8}}
  - {{metric: membership_auc, max: 0.9}}
""",
    ),
)

VARIANT_NAMES = tuple(v.name for v in VARIANTS)


def variant(name: str) -> Variant:
    return next(v for v in VARIANTS if v.name == name)


# -- inputs: tiny models and data, all from fixed seeds -----------------------------------------------


def _write_csv(path: Path, rows: list[dict[str, Any]], compress: bool = False) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    data = buf.getvalue().encode()
    # mtime-free bz2 (unlike gzip), so the file's bytes depend on its content only
    path.write_bytes(bz2.compress(data) if compress else data)


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def review_rows(n: int = 400, seed: int = 11) -> list[dict[str, str]]:
    """Reviews whose label follows their sentiment words, with plot rows that keep_if drops, exact
    and near duplicates, conflicting labels, extra whitespace, full-width letters (NFKC) and a few
    texts longer than the tiny model's max_length (truncated)."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    for i in range(n):
        label = "fresh" if i % 2 == 0 else "rotten"
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(2, 9 if i % 13 else 22))]
        for _ in range(rng.randint(1, 3)):
            pool = POSITIVE if label == "fresh" else NEGATIVE
            words.insert(rng.randrange(len(words) + 1), rng.choice(pool))
        if rng.random() < 0.1:
            label = "rotten" if label == "fresh" else "fresh"
        text = " ".join(words) + f" {i}"
        if i % 17 == 0:
            text = "  " + text.replace(" ", "   ", 1) + " "  # whitespace to normalise
        if i % 19 == 0:
            text = text.replace("a", "\uff41", 1)  # a full-width letter NFKC folds
        rows.append(
            {
                "text": text,
                "category": label,
                "movie_name": f"movie-{i % 7}",
                "has_plot_and_reviews": "True" if i % 5 else "False",
            }
        )
    for i in range(12):  # plot summaries, dropped by keep_if
        rows.append(
            {
                "text": f"plot of the story {i}",
                "category": "plot",
                "movie_name": f"movie-{i % 7}",
                "has_plot_and_reviews": "True",
            }
        )
    for i in range(0, 40, 8):  # exact duplicates
        rows.append(dict(rows[i]))
    for i in range(3, 43, 8):  # near duplicates: one word appended
        rows.append({**rows[i], "text": rows[i]["text"].upper() + " !"})
    for i in range(5, 35, 10):  # the same text with the other label
        other = "rotten" if rows[i]["category"] == "fresh" else "fresh"
        rows.append({**rows[i], "category": other})
    return rows


def score_rows(n: int = 220, seed: int = 12) -> list[dict[str, Any]]:
    """Short 'words' (one to three tokens) scored by their positive minus negative words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        pos, neg = rng.randint(0, 2), rng.randint(0, 2)
        words = [rng.choice(POSITIVE) for _ in range(pos)] + [rng.choice(NEGATIVE) for _ in range(neg)]
        words = words or [rng.choice(NEUTRAL)]
        rng.shuffle(words)
        rows.append({"word": " ".join(words) + f" {i}", "pleasantness": round(2 + (pos - neg) / 2, 3)})
    return rows


def category_rows(n: int = 220, seed: int = 13) -> list[dict[str, str]]:
    """Labels from the words a text holds: none, one or several of film / negative / positive."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words = [rng.choice(NEUTRAL) for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.5:
            words.append(rng.choice(POSITIVE))
        if rng.random() < 0.4:
            words.append(rng.choice(NEGATIVE))
        rng.shuffle(words)
        labels = sorted(
            {"film"} & set(words)
            | ({"positive"} if set(words) & set(POSITIVE) else set())
            | ({"negative"} if set(words) & set(NEGATIVE) else set())
        )
        rows.append({"word": " ".join(words) + f" {i}", "labels": ";".join(labels)})
    return rows


COLOURS = {"sky": "blue", "grass": "green", "sun": "yellow", "rose": "red", "snow": "white", "night": "black"}


FILLER = ["please", "thanks", "ok", "tell", "me", "a", "brief", "answer", "friend", "hi", "there", "hello"]


def sft_rows(n: int = 80, seed: int = 14) -> list[dict[str, Any]]:
    """Evals-style prompt/completion rows: a system and a user message in `input`, the answer in
    `ideal` (every third one a one-element list); every tenth prompt is too long and dropped."""
    rng = random.Random(seed)
    things = list(COLOURS)
    rows = []
    for i in range(n):
        thing = things[i % len(things)]
        filler = " ".join(rng.choice(FILLER) for _ in range(rng.randint(1, 5)))
        if i % 10 == 9:
            filler += " " + " ".join(["please"] * 40)
        answer = f"the {thing} is {COLOURS[thing]}"
        rows.append(
            {
                "input": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": f"what is the colour of the {thing} {filler}".strip()},
                ],
                "ideal": [answer] if i % 3 == 0 else answer,
            }
        )
    return rows


DOMAIN = ["we", "propose", "a", "new", "method", "results", "show", "study", "of", "cats", "dogs", "birds"]


def abstract_rows(n: int = 60, seed: int = 15) -> list[dict[str, str]]:
    rng = random.Random(seed)
    return [{"abstract": " ".join(rng.choice(DOMAIN) for _ in range(rng.randint(8, 30)))} for _ in range(n)]


def general_rows(n: int = 40, seed: int = 16) -> list[dict[str, str]]:
    rng = random.Random(seed)
    things = list(COLOURS)
    return [
        {"text": f"what is the colour of the {rng.choice(things)} it is {rng.choice(list(COLOURS.values()))}"}
        for _ in range(n)
    ]


def title_rows(n: int = 100, seed: int = 17) -> list[dict[str, str]]:
    rng = random.Random(seed)
    things = list(COLOURS)
    rows = []
    for i in range(n):
        picked = [things[(i + k) % len(things)] for k in range(rng.randint(1, 3))]
        rows.append(
            {
                "abstract": " ".join(picked)
                + " "
                + " ".join(rng.choice(["please", "ok", "thanks"]) for _ in range(3)),
                "title": " ".join(COLOURS[t] for t in picked),
            }
        )
    return rows


def ner_sentences(n: int = 240, seed: int = 18) -> list[tuple[list[str], list[str]]]:
    sentences = toy_ner(n, seed=seed)
    return [*sentences, *sentences[:6]]  # a few repeated tweets for the duplicate cleaning


def build_inputs(work: Path) -> dict[str, str]:
    """Write the tiny models and data into ``work``; return the SHA-256 of each input file, so a
    golden mismatch can be told apart from a change of the inputs themselves."""
    work.mkdir(parents=True, exist_ok=True)
    write_tiny_bert(work / "bert", seed=0)
    write_tiny_llama(work / "llama", seed=0)
    write_tiny_t5(work / "t5", seed=0)
    _write_csv(work / "reviews.csv.bz2", review_rows(), compress=True)
    write_conll(work / "ner.txt", ner_sentences())
    _write_csv(work / "pleasantness.csv", score_rows())
    _write_csv(work / "categories.csv", category_rows())
    _write_jsonl(work / "sft.jsonl", sft_rows())
    _write_jsonl(work / "abstracts.jsonl", abstract_rows())
    _write_csv(work / "general.csv.bz2", general_rows(), compress=True)
    _write_jsonl(work / "titles.jsonl", title_rows())
    write_tiny_vit(work / "vit", seed=0)
    images = write_image_folder(work / "images", 20, seed=0)
    for i in range(3):  # near copies, removed by near de-duplication
        near_copy(images / "red" / f"red-0-{i}.png", images / "red" / f"near-{i}.png")
    for v in VARIANTS:
        (work / f"{v.name}.yaml").write_text(v.protocol)
    files = sorted(
        p
        for p in work.rglob("*")
        if p.is_file() and (p.suffix == ".safetensors" or p.parent == work) and p.suffix != ".yaml"
    )
    return {str(p.relative_to(work)): sha256_file(p) for p in files}


# -- running and recording ----------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cpu_signature() -> str:
    """What decides the bits of CPU kernels' results: the instruction set torch dispatches to, the
    bf16/AMX units, the torch build, and the machine architecture."""
    import torch

    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    extra = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return "|".join(
        [
            platform.machine(),
            f"torch-{torch.__version__}",
            f"cap-{torch.backends.cpu.get_cpu_capability()}",
            *extra,
        ]
    )


def _skipped(path: str) -> bool:
    parts = path.split(".")
    return any(parts[-len(k.split(".")) :] == k.split(".") for k in NONDETERMINISTIC)


def flatten_numbers(value: Any, prefix: str = "") -> Iterator[tuple[str, float | int | bool | None]]:
    """Every number (and boolean, and null where a number may stand) under its dotted key path; list
    items by index. Non-finite floats are kept as their string names by the JSON layer."""
    if isinstance(value, dict):
        for k in sorted(value):
            yield from flatten_numbers(value[k], f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from flatten_numbers(item, f"{prefix}.{i}" if prefix else str(i))
    elif isinstance(value, bool) or value is None:
        if not _skipped(prefix):
            yield prefix, value
    elif isinstance(value, int | float):
        if not _skipped(prefix):
            yield prefix, value


def _json_safe(x: float | int | bool | None) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return repr(x)  # 'nan', 'inf': json.dumps would write non-standard tokens
    return x


def run_variant(v: Variant, work: Path, out: Path) -> dict[str, Any]:
    """Run one variant through the CLI in a fresh process and return its record."""
    env = {**os.environ, **RUN_ENV}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    # A cache of its own per variant: a run never depends on which variants ran before it.
    env["TUNEPROOF_CACHE"] = str(work / "cache" / v.name)
    proc = subprocess.run(
        [sys.executable, "-m", "tuneproof", "run", f"{v.name}.yaml", "--output-dir", str(out), "--fresh"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode not in (0, 4) or not lines:
        raise RuntimeError(f"{v.name}: exit {proc.returncode}\n{proc.stderr[-4000:]}")
    return record_run(Path(lines[-1]), proc.returncode)


# The run folder's JSON evidence whose values are results; each recorded under its own key.
EVIDENCE_FILES = ("metrics.json", "data_report.json", "training/summary.json", "search/trials.json")


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        value = value.tolist()
    if isinstance(value, list):
        return [_plain(x) for x in value]
    if isinstance(value, float):
        return float.hex(value)  # exact bits, and NaN-safe
    return value


def predictions_digest(path: Path) -> str:
    """SHA-256 of the predictions' values, not of the parquet bytes (those also hold library versions)."""
    import pandas as pd

    rows = [{k: _plain(v) for k, v in r.items()} for r in pd.read_parquet(path).to_dict("records")]
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def record_run(run_dir: Path, exit_code: int) -> dict[str, Any]:
    gates = json.loads((run_dir / "gates.json").read_text())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    weights = sorted(
        p
        for p in (run_dir / "model").rglob("*")
        if p.is_file() and (p.suffix == ".safetensors" or "adapter" in p.name)
    )
    report = json.loads((run_dir / "data_report.json").read_text())
    rec: dict[str, Any] = {
        "exit_code": exit_code,
        "status": manifest["status"],
        "deployable": manifest.get("deployable"),
        "weights_sha256": {str(p.relative_to(run_dir)): sha256_file(p) for p in weights},
        # Every test prediction (labels, probabilities, tags, generations), bit for bit.
        "predictions_sha256": predictions_digest(run_dir / "predictions" / "test.parquet"),
        # The prepared splits' content hashes: cleaning, de-duplication, split and leakage removal.
        "splits_sha256": {name: s["sha256"] for name, s in report["splits"].items()},
        "gates": {
            "passed": gates["passed"],
            "verdicts": [
                {
                    k: _json_safe(g.get(k))
                    for k in ("gate", "kind", "passed", "observed", "low", "high", "threshold")
                }
                for g in gates["verdicts"]
            ],
        },
        "values": {},
    }
    for rel in EVIDENCE_FILES:
        path = run_dir / rel
        if path.is_file():
            rec["values"][rel] = {k: _json_safe(x) for k, x in flatten_numbers(json.loads(path.read_text()))}
    return rec


def record_all(
    work: Path, names: tuple[str, ...] = VARIANT_NAMES, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    inputs = build_inputs(work)
    results = {}
    for name in names:
        if log:
            log(f"running {name}")
        results[name] = run_variant(variant(name), work, work / "runs")
    return {"inputs_sha256": inputs, "variants": results}
