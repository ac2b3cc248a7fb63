"""Classification: tuneproof's default protocol vs the Transformers ``run_glue`` recipe.

Both arms fine-tune all-MiniLM-L6-v2 on the same Rotten Tomatoes rows with the same batch size (32),
learning rate (5e-5), epochs and seed. What differs is exactly what each side does by default:

* tuneproof: the train section of ``examples/review-sentiment.yaml`` (AdamW, linear schedule, 6%
  warmup, weight decay 0.01, precision auto = bf16 autocast on this CPU, length-grouped optimizer
  steps, dynamic padding per micro-batch), run through ``tuneproof.train.fit.fit`` exactly as the
  runner calls it. Early stopping is removed so both arms run the same number of steps.
* recipe (``run_glue`` style): HF ``Trainer`` in fp32, every example padded to 128 tokens
  (``padding="max_length"``, ``default_data_collator``), random sampling (no length grouping),
  Trainer defaults otherwise (no warmup, no weight decay, max_grad_norm 1.0).

Mode ``tta`` evaluates test accuracy on a fixed grid of steps (the same grid for both arms) and
reports a clock that excludes those evaluations (and tuneproof's checkpoint writes, which it makes
at every evaluation, reported separately). Mode ``throughput`` runs ``max_steps`` without
evaluation and reports per-step timestamps and real lengths for steady-state rates and MFU.
The clock starts before the model is loaded and excludes tokenisation, in both arms.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.arms.common import peak_rss_mib, rss_mib, setup, shape_of
from benchmarks.data import LABELS, REPO, minilm_dir, rt_split
from benchmarks.stats import paused_clock

BATCH = 32
LR = 5e-5
RECIPE_MAX_LENGTH = 128


def train_seed(cfg: dict[str, Any]) -> int:
    """The training seed (head init, batch order, dropout); the rows always come from ``cfg["seed"]``,
    so repeats with other training seeds train and test on the same rows."""
    return int(cfg.get("train_seed", cfg["seed"]))


def eval_every(n_train: int, evals_per_epoch: int) -> int:
    steps_per_epoch = math.ceil(n_train / BATCH)
    return max(1, steps_per_epoch // max(1, evals_per_epoch))


def tuneproof_protocol(cfg: dict[str, Any]) -> Any:
    import yaml

    from tuneproof.protocol import validate_protocol

    raw = yaml.safe_load((REPO / "examples" / "review-sentiment.yaml").read_text())
    train = dict(raw["train"])
    train.pop("early_stopping", None)  # same number of steps in both arms
    train["epochs"] = cfg["epochs"]
    if cfg.get("max_steps"):
        train["max_steps"] = cfg["max_steps"]
    if cfg["mode"] == "tta":
        train["eval_every_steps"] = eval_every(cfg["n_train"], cfg["evals_per_epoch"])
    raw["train"] = train
    raw["tracking"] = {"tensorboard": False}
    raw["seed"] = train_seed(cfg)
    protocol = validate_protocol(raw)
    assert protocol.train.batch_size == BATCH and protocol.train.learning_rate == LR, (
        "example protocol changed"
    )
    return protocol


def run_tuneproof(cfg: dict[str, Any]) -> dict[str, Any]:
    setup(cfg["threads"])
    import tuneproof.train.loop as loop_module
    from tuneproof.tasks.registry import get_task
    from tuneproof.train.fit import fit
    from tuneproof.train.model_source import load_tokenizer, resolve_model
    from tuneproof.train.precision import choose_precision

    protocol = tuneproof_protocol(cfg)
    task = get_task(protocol)
    precision, reason = choose_precision(protocol.train.precision)
    ref = resolve_model(protocol.model, REPO / "examples")
    tokenizer = load_tokenizer(ref)
    train_df, test_df = rt_split(cfg["n_train"], cfg["n_test"], cfg["seed"])
    cache = Path(cfg["cache_dir"])
    features = {"train": task.features(train_df, tokenizer, cache)}
    if cfg["mode"] == "tta":
        # The loop's validation hook is how tuneproof evaluates during training; here it scores the
        # test rows, on the same step grid as the recipe. Only the trajectory is used.
        features["validation"] = task.features(test_df, tokenizer, cache)
    lengths = {str(f["row_id"]): len(f["input_ids"]) for f in features["train"]}

    pauses: list[tuple[float, float]] = []
    step_end: dict[int, float] = {}
    evals: list[tuple[int, float, dict[str, Any]]] = []
    save = loop_module.save_checkpoint

    def timed_save(*args: Any, **kwargs: Any) -> Any:
        t = time.perf_counter()
        try:
            return save(*args, **kwargs)
        finally:
            pauses.append((t, time.perf_counter()))

    def on_log(entry: dict[str, Any]) -> None:
        now = time.perf_counter()
        if any(k.startswith("eval_") for k in entry):
            evals.append((entry["step"], now, entry))
            pauses.append((step_end[entry["step"]], now))  # the evaluation ran since the step ended
        else:
            step_end[entry["step"]] = now

    loop_module.save_checkpoint = timed_save  # instrumentation only: measures, changes nothing
    rss_before = rss_mib()
    with tempfile.TemporaryDirectory(prefix="bench-tp-") as tmp:
        t0 = time.perf_counter()
        result = fit(
            task, protocol, ref, tokenizer, features, Path(tmp) / "checkpoints", precision, on_log=on_log
        )
        t_end = time.perf_counter()
    checkpoint_seconds = sum(e - s for s, e in pauses) - sum(t - step_end[s] for s, t, _ in evals)
    clock = paused_clock(t0, pauses)
    steps = sorted(step_end)
    trajectory = [
        {"step": s, "accuracy": float(e["eval_accuracy"]), "train_seconds": clock(step_end[s])}
        for s, _, e in evals
    ]
    return {
        "arm": "tuneproof",
        "precision": precision,
        "precision_reason": reason,
        "steps": len(steps),
        "step_seconds": [clock(step_end[s]) for s in steps],
        "step_lengths": [[lengths[r] for r in ids] for ids in result.train.seen_row_ids],
        "real_tokens": result.train.real_tokens,
        "padded_tokens": result.train.padded_tokens,
        "train_seconds": clock(step_end[steps[-1]]) if steps else None,
        "wall_seconds": t_end - t0,
        "checkpoint_seconds": checkpoint_seconds,
        "eval_seconds": sum(t - step_end[s] for s, t, _ in evals),
        "trajectory": trajectory,
        "n_test": len(test_df),
        "shape": shape_of(result.model).as_dict(),
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak_rss_mib(),
    }


def run_recipe(cfg: dict[str, Any]) -> dict[str, Any]:
    setup(cfg["threads"])
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        TrainerCallback,
        TrainingArguments,
        default_data_collator,
    )

    model_dir = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    train_df, test_df = rt_split(cfg["n_train"], cfg["n_test"], cfg["seed"])

    def encode(df: Any) -> Any:
        enc = tokenizer(
            df["text"].tolist(), padding="max_length", max_length=RECIPE_MAX_LENGTH, truncation=True
        )
        return Dataset.from_dict({**enc, "label": [LABELS.index(x) for x in df["label"]]})

    train_ds = encode(train_df)
    test_ds = encode(test_df) if cfg["mode"] == "tta" else None

    batches: list[list[int]] = []
    recording = {"on": True}

    def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
        batch = default_data_collator(features)
        if recording["on"]:
            batches.append(batch["attention_mask"].sum(1).tolist())
        return batch

    step_end: dict[int, float] = {}
    pauses: list[tuple[float, float]] = []
    evals: list[tuple[int, dict[str, float]]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            step_end[state.global_step] = time.perf_counter()

    class RecipeTrainer(Trainer):
        def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
            recording["on"] = False  # eval batches go through the same collator
            start = time.perf_counter()
            try:
                metrics = super().evaluate(*args, **kwargs)
            finally:
                pauses.append((start, time.perf_counter()))
                recording["on"] = True
            evals.append((self.state.global_step, metrics))
            return metrics

    def accuracy(p: Any) -> dict[str, float]:
        return {"accuracy": float((np.asarray(p.predictions).argmax(-1) == p.label_ids).mean())}

    every = eval_every(cfg["n_train"], cfg["evals_per_epoch"])
    rss_before = rss_mib()
    with tempfile.TemporaryDirectory(prefix="bench-recipe-") as tmp:
        t0 = time.perf_counter()
        torch.manual_seed(train_seed(cfg))
        model = AutoModelForSequenceClassification.from_pretrained(
            model_dir,
            num_labels=len(LABELS),
            id2label=dict(enumerate(LABELS)),
            label2id={x: i for i, x in enumerate(LABELS)},
        )
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=BATCH,
            per_device_eval_batch_size=64,  # evaluation is off the clock; larger only saves bench time
            learning_rate=LR,
            num_train_epochs=cfg["epochs"],
            max_steps=cfg.get("max_steps") or -1,
            eval_strategy="steps" if test_ds is not None else "no",
            eval_steps=every,
            save_strategy="no",  # run_glue saves every 500 steps: never within these runs
            report_to="none",
            disable_tqdm=True,
            seed=train_seed(cfg),
            bf16=False,
            dataloader_num_workers=0,
        )
        trainer = RecipeTrainer(
            model=model,
            args=args,
            train_dataset=train_ds,
            eval_dataset=test_ds,
            data_collator=collate,
            compute_metrics=accuracy,
            callbacks=[Clock()],
        )
        trainer.train()
        t_end = time.perf_counter()
        last = max(step_end)
        if test_ds is not None and (not evals or evals[-1][0] != last):
            trainer.evaluate()  # the final point of the grid; after t_end, so off the clock
    clock = paused_clock(t0, pauses)
    steps = sorted(step_end)
    trajectory = [
        {"step": s, "accuracy": float(m["eval_accuracy"]), "train_seconds": clock(step_end[s])}
        for s, m in evals
    ]
    real = sum(sum(b) for b in batches[: len(steps)])
    return {
        "arm": "recipe",
        "precision": "fp32",
        "steps": len(steps),
        "step_seconds": [clock(step_end[s]) for s in steps],
        "step_lengths": batches[: len(steps)],
        "real_tokens": real,
        "padded_tokens": sum(len(b) for b in batches[: len(steps)]) * RECIPE_MAX_LENGTH,
        "train_seconds": clock(step_end[last]),
        "wall_seconds": t_end - t0,
        "checkpoint_seconds": 0.0,
        "eval_seconds": sum(e - s for s, e in pauses),
        "trajectory": trajectory,
        "n_test": len(test_df),
        "shape": shape_of(model).as_dict(),
        "rss_before_mib": rss_before,
        "peak_rss_mib": peak_rss_mib(),
    }
