"""The benchmark's cheap pieces on tiny inputs: formulas, medians and ratios, clocks, summaries and
the Markdown report. Nothing here is timed or asserts a speed; the benchmark itself measures."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # plain `pytest` puts tests/, not the repository root, on the path
    sys.path.insert(0, str(ROOT))

from benchmarks import bench, report, stats, worker  # noqa: E402


def test_train_and_inference_flops_follow_the_stated_formula() -> None:
    shape = stats.Shape(non_embedding_params=10, layers=2, hidden=4)
    # 6*N*T + 12*L*d*T^2 per sequence, summed over sequences
    assert stats.train_flops(shape, [3]) == 6 * 10 * 3 + 12 * 2 * 4 * 9
    assert stats.train_flops(shape, [3, 1]) == stats.train_flops(shape, [3]) + 6 * 10 + 12 * 2 * 4
    assert stats.inference_flops(shape, [3]) == 2 * 10 * 3 + 4 * 2 * 4 * 9


def test_mfu_of_all_minilm_l6_shape() -> None:
    # all-MiniLM-L6-v2 with a 2-label head: 6 layers of d=384 (ffn 1536), pooler and classifier.
    d, ffn, layers = 384, 1536, 6
    per_layer = 4 * (d * d + d) + (d * ffn + ffn) + (ffn * d + d) + 2 * (2 * d)
    n = layers * per_layer + (d * d + d) + (d * 2 + 2)
    shape = stats.Shape(n, layers, d)
    flops = stats.train_flops(shape, [30] * 32)  # one step of 32 sequences of 30 real tokens
    assert flops == pytest.approx(32 * (6 * n * 30 + 12 * layers * d * 900))
    # That step in 0.5 s on a 400 GFLOP/s machine:
    assert stats.mfu(flops, 0.5, 400.0) == pytest.approx(flops / 0.5 / 400e9)
    assert stats.mfu(flops, 0.5, None) is None


def test_shape_of_counts_non_embedding_parameters_once(tiny_bert: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    from benchmarks.arms.common import shape_of

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2)
    shape = shape_of(model)
    expected = sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)
    assert (shape.non_embedding_params, shape.layers, shape.hidden) == (expected, 2, 32)


def test_median_and_ratio_skip_missing_values() -> None:
    assert stats.median([3.0, None, 1.0, 2.0]) == 2.0
    assert stats.median([None, float("nan")]) is None
    assert stats.ratio(6.0, 3.0) == 2.0
    assert stats.ratio(None, 3.0) is None and stats.ratio(1.0, 0.0) is None


def test_steady_rate_leaves_out_the_first_steps() -> None:
    ends = [10.0, 11.0, 12.0, 13.0]  # step 1 took 10 s (warm-up), then 1 s each
    tokens = [100, 100, 100, 100]
    assert stats.steady_rate(ends, tokens, skip=1) == pytest.approx(100.0)
    assert stats.steady_rate(ends, tokens, skip=4) is None
    with pytest.raises(ValueError):
        stats.steady_rate(ends, tokens, skip=0)


def test_paused_clock_and_time_to_target() -> None:
    clock = stats.paused_clock(0.0, [(2.0, 5.0), (7.0, 8.0)])
    assert clock(2.0) == 2.0
    assert clock(6.0) == 3.0  # 3 s of evaluation taken out
    assert clock(10.0) == 6.0
    trajectory = [
        {"step": 1, "accuracy": 0.70, "train_seconds": 1.0},
        {"step": 2, "accuracy": 0.80, "train_seconds": 2.0},
        {"step": 3, "accuracy": 0.79, "train_seconds": 3.0},
    ]
    assert stats.time_to_target(trajectory, 0.80) == 2.0
    assert stats.time_to_target(trajectory, 0.90) is None


def test_wilson_interval_and_paired_loss_difference() -> None:
    low, high = stats.wilson_interval(0.8, 1000)
    assert low < 0.8 < high and high - low == pytest.approx(0.0496, abs=0.002)
    same = stats.paired_loss_difference([1.0, 2.0, 3.0], [1, 2, 3], [1.0, 2.0, 3.0], [1, 2, 3], samples=200)
    assert same["diff"] == 0.0 and same["low"] == 0.0 and same["high"] == 0.0
    worse = stats.paired_loss_difference([2.0, 4.0], [1, 2], [1.0, 2.0], [1, 2], samples=200)
    assert worse["diff"] == pytest.approx(1.0) and worse["low"] > 0


def test_markdown_table() -> None:
    table = report.markdown_table(["arm", "value"], [["a", 1.23456], ["b", None]])
    assert table.splitlines() == ["| arm | value |", "| --- | --- |", "| a | 1.23 |", "| b | n/a |"]


def _training_run(arm: str, precision: str, seconds_per_step: float, padded: int) -> dict:
    steps = 6
    lengths = [[30] * 32 for _ in range(steps)]
    return {
        "arm": arm,
        "precision": precision,
        "step_seconds": [seconds_per_step * (i + 1) for i in range(steps)],
        "step_lengths": lengths,
        "real_tokens": 30 * 32 * steps,
        "padded_tokens": padded * 32 * steps,
        "shape": {"non_embedding_params": 10_000_000, "layers": 6, "hidden": 384},
        "peak_rss_mib": 1000.0,
        "rss_before_mib": 500.0,
        "train_seconds": seconds_per_step * steps,
        "checkpoint_seconds": 0.5,
        "n_test": 100,
    }


def test_summaries_and_report_render_without_a_machine() -> None:
    peaks = {"bf16_gflops": 100.0, "fp32_gflops": 50.0, "paths": {"fp32_mm": {"gflops": 50.0, "n": 1024}}}
    recipe = {
        **_training_run("recipe", "fp32", 4.0, 128),
        "trajectory": [
            {"step": 3, "accuracy": 0.70, "train_seconds": 12.0},
            {"step": 6, "accuracy": 0.75, "train_seconds": 24.0},
        ],
    }
    tuned = {
        **_training_run("tuneproof", "bf16", 1.0, 32),
        "trajectory": [
            {"step": 3, "accuracy": 0.76, "train_seconds": 3.0},
            {"step": 6, "accuracy": 0.78, "train_seconds": 6.0},
        ],
    }
    cls = report.summarize_classification(
        {
            "tta": {"recipe": recipe, "tuneproof": tuned},
            "throughput": {"recipe": [recipe, {"error": "boom"}], "tuneproof": [tuned]},
        },
        peaks,
        skip=2,
    )
    tta = cls["time_to_accuracy"]
    assert tta["target_accuracy"] == 0.75 and tta["speedup"] == pytest.approx(24.0 / 3.0)
    assert cls["real_tokens_per_s_ratio"] == pytest.approx(4.0)
    assert cls["targets"]["time_to_accuracy"] is True
    assert 0 < cls["throughput"]["tuneproof"]["mfu_best_peak"] < 1

    heldout = {"nll": [1.0, 2.0], "tokens": [1, 2], "loss": 1.0}
    sft_tp = {**_training_run("tuneproof", "bf16", 1.0, 30), "heldout": heldout}
    sft_trl = {**_training_run("trl", "bf16", 2.0, 40), "heldout": heldout}
    sft = report.summarize_sft({"tuneproof": [sft_tp], "trl": [sft_trl]}, peaks, skip=1)
    assert sft["versus"]["trl"]["real_tokens_per_s_ratio"] == pytest.approx(2.0)
    assert sft["targets"] == {"tokens_per_second": True, "peak_memory": True, "heldout_loss": True}

    # Where TRL's default bf16 is emulated its arm is skipped and the targets name the fp32 arm.
    emulated = report.summarize_sft(
        {"tuneproof": [sft_tp], "trl_fp32": [sft_trl], "trl_skipped": "bf16 emulated"}, peaks, skip=1
    )
    assert emulated["targets_against"] == "trl_fp32" and emulated["targets"]["tokens_per_second"] is True
    assert "TRL defaults arm skipped: bf16 emulated" in report.render_markdown({"summary": {"sft": emulated}})

    inference = report.summarize_inference(
        {
            "samples_per_second": {
                "pipeline": {"1": [10.0, 12.0], "32": [100.0]},
                "predictor": {"1": [20.0, 22.0], "32": [200.0]},
            },
            "precision": {"pipeline": "fp32", "predictor": "bf16"},
        }
    )
    assert inference["ratio_to_pipeline"]["predictor"]["32"] == 2.0
    assert inference["targets"]["predictor_b32"] is False

    results = {
        "meta": {"mode": "quick", "started": "now", "threads": 2, "versions": {}},
        "peak": peaks,
        "summary": {"classification": cls, "sft": sft, "inference": inference},
    }
    text = report.render_markdown(results)
    assert "Quick run" in text and "| target | measured | verdict |" in text
    assert "MET" in text and "MISSED" in text
    assert "tuneproof vs TRL defaults" in text

    skipped = report.render_markdown({"summary": {"sft": report.summarize_sft({"skipped": "why"}, peaks, 1)}})
    assert "SFT arm skipped: why" in skipped


def test_plans_and_worker_arms() -> None:
    quick, full = bench.quick_plan(2), bench.full_plan(2)
    assert quick.mode == "quick" and full.mode == "full"
    assert quick.cls_train_rows < full.cls_train_rows and quick.repeats <= full.repeats
    assert full.infer_batch_sizes == (1, 8, 32, 128)
    assert {"peak", "cls_tuneproof", "cls_recipe", "sft_tuneproof", "sft_trl", "inference"} <= set(
        worker.arms()
    )
    assert math.isclose(report.TARGETS["cls_time_to_accuracy"], 4.0)


def test_step_anatomy_splits_profiled_time_into_parts_that_add_up() -> None:
    from benchmarks.arms.anatomy import split_times

    events = [
        ("aten::mm", 400.0, 400.0),
        ("aten::addmm", 100.0, 120.0),
        ("aten::bernoulli_", 50.0, 50.0),
        ("Optimizer.step#AdamW.step", 10.0, 200.0),  # inclusive: its element-wise children below
        ("aten::_fused_adamw_", 190.0, 190.0),
        ("aten::gelu", 250.0, 250.0),
    ]
    t = split_times(events)
    assert t["total"] == pytest.approx(1000e-6)
    assert (t["matmul"], t["dropout_rng"], t["optimizer"]) == pytest.approx((500e-6, 50e-6, 200e-6))
    assert t["other"] == pytest.approx(250e-6)  # the optimizer's children are not counted twice
    assert sum(v for k, v in t.items() if k != "total") == pytest.approx(t["total"])

    anatomy = {
        "precision": "bf16",
        "profiled_steps": 2,
        "seconds": t,
        "shares": {k: v / t["total"] for k, v in t.items() if k != "total"},
        "gemm_gflops_per_s": 50.0,
    }
    text = "\n".join(report.anatomy_lines(anatomy, {"bf16_gflops": 100.0}))
    assert "50% of the bf16 peak" in text and "| dropout masks (CPU random number generation) |" in text
    assert "cls_anatomy" in worker.arms()


def test_time_to_accuracy_averages_training_seeds_point_by_point() -> None:
    def run(accs: list[float], secs: list[float]) -> dict:
        traj = [
            {"step": 3 * (i + 1), "accuracy": a, "train_seconds": t}
            for i, (a, t) in enumerate(zip(accs, secs, strict=True))
        ]
        return {"trajectory": traj, "n_test": 400, "train_seconds": secs[-1], "checkpoint_seconds": 1.0}

    # Seed-to-seed spread as large as the arms' difference: one seed alone would say "not reached".
    recipe = [run([0.70, 0.74], [10.0, 20.0]), run([0.72, 0.76], [12.0, 22.0])]
    tuned = [run([0.73, 0.77], [2.0, 4.0]), run([0.75, 0.73], [3.0, 5.0])]
    assert stats.mean_trajectory(recipe)[-1] == pytest.approx(
        {"step": 6, "accuracy": 0.75, "train_seconds": 21.0}
    )
    cls = report.summarize_classification(
        {"tta": {"recipe": recipe, "tuneproof": tuned}, "throughput": {"recipe": [], "tuneproof": []}},
        {},
        skip=1,
    )
    tta = cls["time_to_accuracy"]
    assert tta["target_accuracy"] == pytest.approx(0.75)
    assert tta["tuneproof_seconds"] == pytest.approx(4.5)  # mean at step 6: accuracy 0.75, 4.5 s
    assert tta["speedup"] == pytest.approx(21.0 / 4.5)
    assert tta["seeds"] == {"recipe": 2, "tuneproof": 2}
    assert tta["final_accuracy_per_seed"]["tuneproof"] == [0.77, 0.73]
    assert "means over training seeds" in report.render_markdown({"summary": {"classification": cls}})


def test_busy_machine_warning_discounts_the_benchmarks_own_threads() -> None:
    quiet = {"threads": 2, "loadavg_start": 0.9, "loadavg_end": 2.1}  # the last arm kept 2 cores busy
    assert not report.machine_was_busy(quiet)
    assert report.machine_was_busy({**quiet, "loadavg_start": 1.6})  # something ran before it started
    assert report.machine_was_busy({**quiet, "loadavg_end": 3.4})  # something ran beside it
    assert "machine was busy" in report.render_markdown({"meta": {**quiet, "loadavg_start": 1.6}})


def test_export_bench_table_puts_speed_ratios_next_to_each_exports_accuracy_difference() -> None:
    from benchmarks import export_bench

    speed = {
        "torch": {"1": 10.0, "8": 20.0, "32": 30.0, "128": 40.0},
        "onnx": {"1": 12.0, "8": 24.0, "32": 45.0, "128": 50.0},
        "onnx-int8": {"1": 20.0, "8": 40.0, "32": 60.0, "128": 70.0},
        "pipeline": {"1": 5.0, "8": 10.0, "32": 15.0, "128": 16.0},
    }
    diff = {"diff": 0.001, "low": -0.002, "high": 0.004}
    same = {"value": 0.99, "low": 0.98, "high": 0.995}
    sizes = {"onnx": 91.74, "onnx-int8": 60.4}
    acc = {
        f: {"accuracy_minus_original": diff, "identical_predictions": same, "model_file_mb": sizes[f]}
        for f in ("onnx", "onnx-int8")
    }
    table = export_bench.render({"samples_per_second": speed, "accuracy": acc})
    assert "Model file: onnx 91.7 MB, onnx-int8 60.4 MB" in table
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines() if line.startswith("| ")}
    assert (
        "| 2.00x |" in rows["torch"] and "| 4.00x |" in rows["onnx-int8"] and "| 1.00x |" in rows["pipeline"]
    )
    assert "+0.0010 [-0.0020, +0.0040]" in rows["onnx"] and "(the original)" in rows["torch"]
    assert "Best backend at b=32: onnx-int8, 4.00x the plain pipeline (target 4x)." in table
