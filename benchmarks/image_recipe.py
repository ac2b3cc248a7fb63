"""Image classification: tuneproof's default against the ``run_image_classification`` Trainer recipe.

Both arms fine-tune the packaged EfficientNet-Lite0 (ImageNet weights) on the same Fashion-MNIST
rows (the images example's data stage, so the same decoded 32 px RGB images), with the same batch
size, learning rate, epochs and seed. What differs is what each side does by default:

* tuneproof: the train section of ``examples/fashion-mnist-images.yaml`` (AdamW, cosine schedule,
  5% warmup, precision auto: the precision probe's choice of fp32/bf16 autocast x NCHW/channels-last,
  timed inside ``fit`` and counted on tuneproof's clock), batch augmentation with
  kornia from the protocol's ``images.augment`` (flip, rotation, scale-crop, colour jitter), run
  through ``tuneproof.train.fit.fit`` exactly as the runner calls it. Early stopping is removed so
  both arms run the same number of steps.
* recipe (``examples/pytorch/image-classification/run_image_classification.py`` style): HF
  ``Trainer`` in fp32, the recipe's train transforms applied per image as the DataLoader fetches
  it (RandomResizedCrop(size) + RandomHorizontalFlip + ToTensor + Normalize; written with PIL
  here, because torchvision does not import beside this torch), ``dataloader_num_workers`` 0 (the
  Trainer default), Trainer defaults otherwise (linear schedule, no warmup, no weight decay).

Test accuracy is measured on a fixed grid of steps (the same grid in both arms) and the clock
excludes those evaluations (and tuneproof's checkpoint writes, which it makes at each evaluation).
Arms alternate order across repeats. A last part times one training step of the same model in
NCHW against channels-last, fp32 and bf16 (all four, whatever the CPU flags say), interleaved.
``--protocol`` runs it on another image protocol (the smoke test uses a tiny ViT); ``--json``
writes the runs, the table's rows, the ratios and the step timings.

    nice -n 10 python -m benchmarks.image_recipe --n-train 800 --n-test 400 --epochs 3 --repeats 1
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.stats import paused_clock

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "fashion-mnist-images.yaml"


def protocol_for(cfg: dict[str, Any]) -> Any:
    import yaml

    from tuneproof.protocol import validate_protocol

    raw = yaml.safe_load(Path(cfg["protocol"]).read_text())
    raw["images"]["limit"] = cfg["n_train"] + cfg["n_test"]
    n = raw["images"]["limit"]
    # Neither arm is gated, and a smoke-sized run has classes too small for the split minimums.
    raw["split"] = {
        "train": cfg["n_train"] / n,
        "validation": 0.0,
        "test": cfg["n_test"] / n,
        "enforce_minimums": False,
    }
    raw.pop("gates", None)
    train = dict(raw["train"])
    train.pop("early_stopping", None)  # same number of steps in both arms
    train["epochs"] = cfg["epochs"]
    train["eval_every_steps"] = cfg["eval_every"]
    raw["train"] = train
    raw["tracking"] = {"tensorboard": False}
    raw.pop("calibration", None)  # fitted after training: not part of either arm
    return validate_protocol(raw)


def prepared_rows(cfg: dict[str, Any]) -> tuple[Any, Any, Any, Any]:
    """The example's data stage (reading, checks, de-duplication, split) on the first rows: the
    same train and test frames for both arms."""
    from tuneproof.tasks.base import TaskEnv
    from tuneproof.tasks.registry import get_task
    from tuneproof.train.model_source import resolve_model

    protocol = protocol_for(cfg)
    base = Path(cfg["protocol"]).parent
    ref = resolve_model(protocol.model, base)
    task_cls = type(get_task(protocol))
    processor = task_cls.load_preprocessor(protocol, ref)
    task = get_task(protocol, TaskEnv(tokenizer=processor, ref=ref))
    prepared = task.prepare_data(base)
    task.set_labels(prepared)
    return protocol, task, ref, prepared


def eval_steps(n_train: int, batch: int, evals_per_epoch: int) -> int:
    return max(1, math.ceil(n_train / batch) // max(1, evals_per_epoch))


def run_tuneproof(cfg: dict[str, Any], state: tuple[Any, Any, Any, Any]) -> dict[str, Any]:
    import tuneproof.train.loop as loop_module
    from tuneproof.train.fit import fit
    from tuneproof.train.precision import choose_precision

    protocol, task, ref, prepared = state
    precision, reason = choose_precision(protocol.train.precision)
    train_df, test_df = prepared.splits["train"], prepared.splits["test"]
    features = {
        "train": task.features(train_df, None, None),
        "validation": task.features(test_df, None, None),
    }
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
            pauses.append((step_end[entry["step"]], now))
        else:
            step_end[entry["step"]] = now

    loop_module.save_checkpoint = timed_save  # instrumentation only: measures, changes nothing
    try:
        with tempfile.TemporaryDirectory(prefix="bench-img-tp-") as tmp:
            t0 = time.perf_counter()  # the precision probe inside fit() is on the clock: part of the default
            result = fit(
                task, protocol, ref, task.processor, features, Path(tmp) / "ckpt", precision, on_log=on_log
            )
            t_end = time.perf_counter()
    finally:
        loop_module.save_checkpoint = save
    clock = paused_clock(t0, pauses)
    steps = sorted(step_end)
    return {
        "arm": "tuneproof",
        "precision": result.precision,
        "channels_last": bool(result.probe and result.probe.channels_last),
        "precision_reason": result.probe.reason if result.probe is not None else reason,
        "precision_probe": result.probe.to_json() if result.probe is not None else None,
        "steps": len(steps),
        "train_images": len(features["train"]) * protocol.train.epochs,
        "train_seconds": clock(step_end[steps[-1]]),
        "wall_seconds": t_end - t0,
        "step_seconds": [clock(step_end[s]) for s in steps],
        "trajectory": [
            {"step": s, "accuracy": float(e["eval_accuracy"]), "train_seconds": clock(step_end[s])}
            for s, _, e in evals
        ],
    }


def run_recipe(cfg: dict[str, Any], state: tuple[Any, Any, Any, Any]) -> dict[str, Any]:
    import io

    import numpy as np
    import torch
    from datasets import Dataset
    from PIL import Image
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from tuneproof.train.efficientnet_lite import MEAN, STD

    protocol, task, ref, prepared = state
    labels = task.labels
    size = task.processor.size
    rng = np.random.default_rng(protocol.seed)
    mean = np.array(MEAN, dtype=np.float32)[:, None, None]
    std = np.array(STD, dtype=np.float32)[:, None, None]

    def to_tensor(img: Any) -> Any:  # ToTensor + Normalize
        x = np.asarray(img.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0
        return torch.from_numpy((x - mean) / std)

    def random_resized_crop(img: Any) -> Any:
        # torchvision's RandomResizedCrop defaults: scale (0.08, 1), ratio (3/4, 4/3), 10 tries.
        w, h = img.size
        for _ in range(10):
            area = w * h * rng.uniform(0.08, 1.0)
            aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < cw <= w and 0 < ch <= h:
                x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                return img.resize((size, size), Image.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
        return img.resize((size, size), Image.BILINEAR)

    def train_transform(batch: dict[str, Any]) -> dict[str, Any]:
        out = []
        for png in batch["image"]:
            img = random_resized_crop(Image.open(io.BytesIO(png)))
            if rng.random() < 0.5:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            out.append(to_tensor(img))
        return {"pixel_values": out, "labels": batch["labels"]}

    def eval_transform(batch: dict[str, Any]) -> dict[str, Any]:
        return {
            "pixel_values": [to_tensor(Image.open(io.BytesIO(p))) for p in batch["image"]],
            "labels": batch["labels"],
        }

    def dataset(df: Any) -> Any:
        return Dataset.from_dict(
            {"image": [bytes(b) for b in df["image"]], "labels": [labels.index(x) for x in df["label"]]}
        )

    train_ds = dataset(prepared.splits["train"]).with_transform(train_transform)
    test_ds = dataset(prepared.splits["test"]).with_transform(eval_transform)

    def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:  # the recipe's collate_fn
        return {
            "pixel_values": torch.stack([e["pixel_values"] for e in examples]),
            "labels": torch.tensor([e["labels"] for e in examples]),
        }

    step_end: dict[int, float] = {}
    pauses: list[tuple[float, float]] = []
    evals: list[tuple[int, dict[str, float]]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            step_end[state.global_step] = time.perf_counter()

    class RecipeTrainer(Trainer):
        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, **kw: Any
        ) -> Any:
            # The recipe's models compute this loss in forward; the packaged wrapper returns logits.
            lab = inputs.pop("labels")
            out = model(**inputs)
            loss = torch.nn.functional.cross_entropy(out.logits.float(), lab)
            return (loss, out) if return_outputs else loss

        def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
            start = time.perf_counter()
            try:
                metrics = super().evaluate(*args, **kwargs)
            finally:
                pauses.append((start, time.perf_counter()))
            evals.append((self.state.global_step, metrics))
            return metrics

    def accuracy(p: Any) -> dict[str, float]:
        return {"accuracy": float((np.asarray(p.predictions).argmax(-1) == p.label_ids).mean())}

    with tempfile.TemporaryDirectory(prefix="bench-img-recipe-") as tmp:
        t0 = time.perf_counter()
        torch.manual_seed(protocol.seed)
        model = task.build_model(ref)
        args = TrainingArguments(
            output_dir=tmp,
            per_device_train_batch_size=protocol.train.batch_size,
            per_device_eval_batch_size=protocol.evaluate.batch_size,
            learning_rate=protocol.train.learning_rate,
            num_train_epochs=protocol.train.epochs,
            eval_strategy="steps",
            eval_steps=cfg["eval_every"],
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=protocol.seed,
            bf16=False,
            dataloader_num_workers=0,
            remove_unused_columns=False,  # as the recipe sets it: the transform needs "image"
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
        if not evals or evals[-1][0] != last:
            trainer.evaluate()  # the grid's last point; after t_end, so off the clock
    clock = paused_clock(t0, pauses)
    return {
        "arm": "recipe",
        "precision": "fp32",
        "steps": len(step_end),
        "train_images": len(train_ds) * protocol.train.epochs,
        "train_seconds": clock(step_end[last]),
        "wall_seconds": t_end - t0,
        "step_seconds": [clock(step_end[s]) for s in sorted(step_end)],
        "trajectory": [
            {"step": s, "accuracy": float(m["eval_accuracy"]), "train_seconds": clock(step_end[s])}
            for s, m in evals
        ],
    }


def layout_probe(state: tuple[Any, Any, Any, Any], rounds: int, steps: int) -> dict[str, float]:
    """Seconds per training step (forward, backward, the run's AdamW) of the same model on one real
    batch: fp32 and bf16 autocast (bf16 even where the CPU flags would not pick it), NCHW and
    channels-last, interleaved round by round, with the timing loop tuneproof's own precision probe
    uses (``tuneproof.train.precision_probe.time_candidates``; a candidate 1.5x slower than the
    fastest after a round is not timed again)."""
    import torch

    from tuneproof.train.fit import apply_method
    from tuneproof.train.precision_probe import Candidate, time_candidates

    protocol, task, ref, prepared = state
    feats = task.features(prepared.splits["train"], None, None)
    batch = task.collate(0)(feats[: protocol.train.batch_size])
    torch.manual_seed(protocol.seed)
    model = apply_method(task.build_model(ref), protocol, task)
    candidates = [Candidate(p, cl) for p in ("fp32", "bf16") for cl in (False, True)]
    seconds = time_candidates(
        model, batch, task.loss_fn(feats), protocol.train, candidates, rounds, steps, max_seconds=float("inf")
    )
    return {c.label: statistics.median(ts) for c, ts in seconds.items() if ts}


def median_step_rate(step_seconds: list[float], batch: int) -> float:
    """Images/s from the median time of one step (steps 2..n; the first holds one-time costs): on a
    shared machine, less moved by another job's burst than the total."""
    gaps = [b - a for a, b in itertools.pairwise(step_seconds)]
    return batch / statistics.median(gaps)


def reach(trajectory: list[dict[str, Any]], target: float) -> float | None:
    for point in trajectory:
        if point["accuracy"] >= target - 1e-12:
            return float(point["train_seconds"])
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--protocol", type=Path, default=EXAMPLE, help="an image protocol (default: the example)")
    ap.add_argument("--n-train", type=int, default=800)
    ap.add_argument("--n-test", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--evals-per-epoch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layout-rounds", type=int, default=3)
    ap.add_argument("--layout-steps", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch
    import transformers

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    cfg = {
        "protocol": str(args.protocol),
        "n_train": args.n_train,
        "n_test": args.n_test,
        "epochs": args.epochs,
        "eval_every": 1,
    }
    state = prepared_rows(cfg)
    n_train = len(state[3].splits["train"])
    cfg["eval_every"] = eval_steps(n_train, state[0].train.batch_size, args.evals_per_epoch)
    state = (protocol_for(cfg), *state[1:])
    print(f"rows: train {n_train}, test {len(state[3].splits['test'])}; eval every {cfg['eval_every']} steps")
    runs: list[dict[str, Any]] = []
    for r in range(args.repeats):
        order = [run_tuneproof, run_recipe] if r % 2 == 0 else [run_recipe, run_tuneproof]
        for arm in order:
            res = arm(cfg, state)
            res["repeat"] = r
            runs.append(res)
            print(json.dumps({k: v for k, v in res.items() if k != "trajectory"}))
            print(
                "  trajectory:",
                [
                    (p["step"], round(p["accuracy"], 3), round(p["train_seconds"], 1))
                    for p in res["trajectory"]
                ],
            )
    layout = layout_probe(state, args.layout_rounds, args.layout_steps)

    by = {a: [x for x in runs if x["arm"] == a] for a in ("tuneproof", "recipe")}
    best = {
        a: statistics.median(max(p["accuracy"] for p in x["trajectory"]) for x in xs) for a, xs in by.items()
    }
    target = min(best.values())
    rows = {}
    for a, xs in by.items():
        rate = statistics.median(x["train_images"] / x["train_seconds"] for x in xs)
        tta = [reach(x["trajectory"], target) for x in xs]
        tta_med = (
            statistics.median([t for t in tta if t is not None]) if all(t is not None for t in tta) else None
        )
        final = statistics.median(x["trajectory"][-1]["accuracy"] for x in xs)
        steady = statistics.median(median_step_rate(x["step_seconds"], state[0].train.batch_size) for x in xs)
        rows[a] = {
            "images_per_s": rate,
            "median_step_images_per_s": steady,
            "tta_s": tta_med,
            "final_acc": final,
            "best_acc": best[a],
        }
    print(f"\ntarget accuracy (the lower of the two arms' best): {target:.3f}")
    print(
        "| arm | precision | train images/s (total) | images/s (median step) | time to target (s) "
        "| best test acc | final test acc |"
    )
    print("|---|---|---|---|---|---|---|")
    for a, row in rows.items():
        tta_s = f"{row['tta_s']:.0f}" if row["tta_s"] is not None else "not reached"
        print(
            f"| {a} | {by[a][0]['precision']} | {row['images_per_s']:.1f} | "
            f"{row['median_step_images_per_s']:.1f} | {tta_s} | "
            f"{row['best_acc']:.3f} | {row['final_acc']:.3f} |"
        )
    ips = rows["tuneproof"]["images_per_s"] / rows["recipe"]["images_per_s"]
    steady_ratio = rows["tuneproof"]["median_step_images_per_s"] / rows["recipe"]["median_step_images_per_s"]
    tta_ratio = (
        rows["recipe"]["tta_s"] / rows["tuneproof"]["tta_s"]
        if rows["recipe"]["tta_s"] and rows["tuneproof"]["tta_s"]
        else None
    )
    print(
        f"tuneproof/recipe images/s: {ips:.2f}x total, {steady_ratio:.2f}x median step; "
        f"recipe/tuneproof time to target: {tta_ratio and f'{tta_ratio:.2f}x'}"
    )
    print(
        "training step, batch",
        state[0].train.batch_size,
        "(s, median):",
        {k: round(v, 4) for k, v in layout.items()},
    )
    fp32 = layout["fp32-nchw"]
    print("step time / fp32 NCHW:", {k: round(v / fp32, 2) for k, v in layout.items()})
    if args.json:
        ratios = {"images_per_s": ips, "median_step_images_per_s": steady_ratio, "time_to_target": tta_ratio}
        out = {
            "command": sys.argv,
            "load_average_end": os.getloadavg(),
            "runs": runs,
            "rows": rows,
            "target": target,
            "ratios": ratios,
            "layout": layout,
        }
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
