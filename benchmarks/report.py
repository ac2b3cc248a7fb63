"""Turn the arms' raw results into the summary (medians, ratios, targets) and a Markdown report.

Pure functions of the result dictionaries, so a saved ``results/<timestamp>.json`` can be rendered
again (``python benchmarks/bench.py --render results/X.json``) and the smoke test can run them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.stats import (
    Shape,
    mean_trajectory,
    median,
    mfu,
    paired_loss_difference,
    ratio,
    steady_flops_rate,
    steady_rate,
    time_to_target,
    wilson_interval,
)

TARGETS = {
    "cls_time_to_accuracy": 4.0,  # tuneproof reaches the recipe's test accuracy >= 4x sooner
    "cls_mfu": 0.50,  # real-token MFU >= 50% of the measured peak (bf16 where native)
    "sft_tokens_per_second": 1.5,  # >= 1.5x TRL defaults' real tokens/s
    "inference_b32": 2.5,  # >= 2.5x the plain pipeline at batch 32
}


# -- formatting --------------------------------------------------------------------------------------
def fmt(value: Any, spec: str = ".3g", unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:{spec}}{unit}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; cells are formatted with :func:`fmt` unless already strings."""
    cells = [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def verdict(met: bool | None) -> str:
    return {True: "MET", False: "MISSED", None: "not measured"}[met]


# -- per-run rates -----------------------------------------------------------------------------------
def run_rates(run: dict[str, Any], skip: int, peaks: dict[str, Any]) -> dict[str, Any]:
    """Steady-state real tokens/s, padded tokens/s, samples/s and real-token MFU of one training run."""
    times, lengths = run["step_seconds"], run["step_lengths"]
    if len(times) != len(lengths) or len(times) <= skip:
        return {"error": f"too few steps ({len(times)}) for skip={skip}"}
    shape = Shape(**run["shape"])
    real = steady_rate(times, [sum(x) for x in lengths], skip)
    flops_rate = steady_flops_rate(times, lengths, skip, shape)
    seconds = times[-1] - times[skip - 1]
    # The machine's peak is its fastest precision: bf16 where the CPU has native bf16 (oneDNN),
    # fp32 where bf16 is emulated (AVX2-only CPUs run bf16 matmuls far slower than fp32).
    measured = [p for p in (peaks.get("bf16_gflops"), peaks.get("fp32_gflops")) if p]
    best = max(measured) if measured else None
    own = peaks.get("bf16_gflops" if run.get("precision") == "bf16" else "fp32_gflops")
    return {
        "real_tokens_per_s": real,
        "samples_per_s": steady_rate(times, [len(x) for x in lengths], skip),
        "padding_efficiency": ratio(run.get("real_tokens"), run.get("padded_tokens")),
        "model_gflops_per_s": None if flops_rate is None else flops_rate / 1e9,
        "mfu_best_peak": None if flops_rate is None else mfu(flops_rate * seconds, seconds, best),
        "mfu_own_precision_peak": None if flops_rate is None else mfu(flops_rate * seconds, seconds, own),
        "peak_rss_mib": run.get("peak_rss_mib"),
        "rss_before_mib": run.get("rss_before_mib"),
    }


def _mean(values: Sequence[float | None]) -> float | None:
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _median_of(runs: Sequence[dict[str, Any]], key: str) -> float | None:
    return median(r.get(key) for r in runs if "error" not in r)


# -- classification ----------------------------------------------------------------------------------
def summarize_classification(raw: dict[str, Any], peaks: dict[str, Any], skip: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    tta = raw.get("tta", {})
    # One run per training seed (a lone dict in result files written before seeds were repeated).
    runs = {arm: tta.get(arm) or [] for arm in ("recipe", "tuneproof")}
    runs = {arm: [r] if isinstance(r, dict) else list(r) for arm, r in runs.items()}
    ok = {arm: [r for r in rs if r.get("trajectory")] for arm, rs in runs.items()}
    if ok["recipe"] and ok["tuneproof"]:
        rec = {"trajectory": mean_trajectory(ok["recipe"]), "n_test": ok["recipe"][0]["n_test"]}
        tp = {"trajectory": mean_trajectory(ok["tuneproof"]), "n_test": ok["tuneproof"][0]["n_test"]}
        rec["train_seconds"] = _mean([r.get("train_seconds") for r in ok["recipe"]])
        tp["train_seconds"] = _mean([r.get("train_seconds") for r in ok["tuneproof"]])
        tp["checkpoint_seconds"] = _mean([r.get("checkpoint_seconds") for r in ok["tuneproof"]])
        n = int(rec["n_test"])
        target = rec["trajectory"][-1]["accuracy"]
        low, high = wilson_interval(target, n)
        t_rec = time_to_target(rec["trajectory"], target)
        t_tp = time_to_target(tp["trajectory"], target)
        t_tp_ci = time_to_target(tp["trajectory"], low)
        final_tp = tp["trajectory"][-1]["accuracy"]
        out["time_to_accuracy"] = {
            "seeds": {arm: len(rs) for arm, rs in ok.items()},
            "final_accuracy_per_seed": {
                arm: [r["trajectory"][-1]["accuracy"] for r in rs] for arm, rs in ok.items()
            },
            "target_accuracy": target,
            "target_interval_95": [low, high],
            "n_test": n,
            "recipe_seconds": t_rec,
            "tuneproof_seconds": t_tp,
            "speedup": ratio(t_rec, t_tp),
            "tuneproof_seconds_to_interval": t_tp_ci,
            "speedup_to_interval": ratio(t_rec, t_tp_ci),
            "recipe_final_accuracy": target,
            "tuneproof_final_accuracy": final_tp,
            "tuneproof_final_interval_95": list(wilson_interval(final_tp, int(tp["n_test"]))),
            "recipe_train_seconds": rec.get("train_seconds"),
            "tuneproof_train_seconds": tp.get("train_seconds"),
            "tuneproof_checkpoint_seconds": tp.get("checkpoint_seconds"),
            "trajectories": {"recipe": rec["trajectory"], "tuneproof": tp["trajectory"]},
        }
    else:
        errors = [r.get("error") for rs in runs.values() for r in rs if r.get("error")]
        out["time_to_accuracy"] = {"error": errors[0] if errors else "no trajectory"}
    per_arm: dict[str, Any] = {}
    for arm in ("tuneproof", "recipe"):
        runs = [
            run_rates(r, skip, peaks) if "error" not in r else r
            for r in raw.get("throughput", {}).get(arm, [])
        ]
        per_arm[arm] = {
            "repeats": runs,
            **{
                k: _median_of(runs, k)
                for k in (
                    "real_tokens_per_s",
                    "samples_per_s",
                    "padding_efficiency",
                    "model_gflops_per_s",
                    "mfu_best_peak",
                    "mfu_own_precision_peak",
                    "peak_rss_mib",
                )
            },
        }
    out["throughput"] = per_arm
    out["anatomy"] = raw.get("anatomy")
    out["real_tokens_per_s_ratio"] = ratio(
        per_arm["tuneproof"]["real_tokens_per_s"], per_arm["recipe"]["real_tokens_per_s"]
    )
    speed = out["time_to_accuracy"].get("speedup")
    reached = "speedup" in out["time_to_accuracy"]
    out["targets"] = {
        "time_to_accuracy": (speed >= TARGETS["cls_time_to_accuracy"])
        if speed is not None
        else (False if reached else None),
        "mfu": None
        if per_arm["tuneproof"]["mfu_best_peak"] is None
        else per_arm["tuneproof"]["mfu_best_peak"] >= TARGETS["cls_mfu"],
    }
    return out


# -- SFT ---------------------------------------------------------------------------------------------
SFT_ARMS = ("tuneproof", "trl", "trl_fp32")
SFT_LABELS = {"trl": "TRL defaults", "trl_fp32": "TRL defaults + bf16=False", "tuneproof": "tuneproof"}


def summarize_sft(raw: dict[str, Any], peaks: dict[str, Any], skip: int) -> dict[str, Any]:
    """Medians per arm; ratios and the paired held-out loss difference of tuneproof against each
    TRL arm. The targets are judged against TRL's defaults (``trl``), as the issue states them."""
    if "skipped" in raw:
        return {"skipped": raw["skipped"]}
    per_arm: dict[str, Any] = {}
    for arm in (a for a in SFT_ARMS if a in raw):
        runs = raw[arm]
        rates = [run_rates(r, skip, peaks) if "error" not in r else r for r in runs]
        per_arm[arm] = {
            "repeats": rates,
            "real_tokens_per_s": _median_of(rates, "real_tokens_per_s"),
            "mfu_best_peak": _median_of(rates, "mfu_best_peak"),
            "padding_efficiency": _median_of(rates, "padding_efficiency"),
            "peak_rss_mib": _median_of(runs, "peak_rss_mib"),
            "real_tokens": next((r["real_tokens"] for r in runs if "real_tokens" in r), None),
            "heldout": next((r["heldout"] for r in runs if "heldout" in r), None),
            "errors": [r["error"] for r in runs if "error" in r],
        }
    mine = per_arm.get("tuneproof", {})
    versus: dict[str, Any] = {}
    for arm in (a for a in per_arm if a != "tuneproof"):
        other = per_arm[arm]
        entry: dict[str, Any] = {
            "real_tokens_per_s_ratio": ratio(mine.get("real_tokens_per_s"), other["real_tokens_per_s"]),
            "peak_memory_ratio": ratio(mine.get("peak_rss_mib"), other["peak_rss_mib"]),
            "heldout": None,
        }
        a, b = mine.get("heldout"), other["heldout"]
        if a and b:
            entry["heldout"] = {
                **paired_loss_difference(a["nll"], a["tokens"], b["nll"], b["tokens"]),
                "n": len(a["nll"]),
            }
        versus[arm] = entry
    # Against TRL's defaults; where that arm was skipped (bf16 emulated), against TRL in fp32.
    against = "trl" if "trl" in versus else "trl_fp32"
    out: dict[str, Any] = {
        "arms": per_arm,
        "versus": versus,
        "targets_against": against,
        "trl_skipped": raw.get("trl_skipped"),
    }
    main = versus.get(against, {})
    speed, mem, loss = main.get("real_tokens_per_s_ratio"), main.get("peak_memory_ratio"), main.get("heldout")
    out["targets"] = {
        "tokens_per_second": None if speed is None else speed >= TARGETS["sft_tokens_per_second"],
        "peak_memory": None if mem is None else mem <= 1.0,
        # Not detectably worse: the paired 95% interval of (tuneproof - TRL) reaches down to 0.
        "heldout_loss": None if loss is None else loss["low"] <= 0.0,
    }
    return out


# -- inference ---------------------------------------------------------------------------------------
def summarize_inference(raw: dict[str, Any]) -> dict[str, Any]:
    if "error" in raw:
        return {"error": raw["error"]}
    sps = raw["samples_per_second"]
    medians = {arm: {b: median(v) for b, v in per_b.items()} for arm, per_b in sps.items()}
    base = medians.get("pipeline", {})
    ratios = {
        arm: {b: ratio(v, base.get(b)) for b, v in per_b.items()}
        for arm, per_b in medians.items()
        if arm != "pipeline"
    }
    at32 = ratios.get("predictor", {}).get("32")
    return {
        "median_samples_per_s": medians,
        "ratio_to_pipeline": ratios,
        "precision": raw.get("precision"),
        "skipped": raw.get("skipped"),
        "peak_rss_mib": raw.get("peak_rss_mib"),
        "targets": {"predictor_b32": None if at32 is None else at32 >= TARGETS["inference_b32"]},
    }


# -- Markdown ----------------------------------------------------------------------------------------
def _diff(h: dict[str, Any]) -> str:
    if not h:
        return "n/a"
    return f"diff {fmt(h['diff'], '+.4f')} [{fmt(h['low'], '+.4f')}, {fmt(h['high'], '+.4f')}]"


def _secs(x: float | None) -> str:
    return fmt(x, ".1f", " s")


def anatomy_lines(anatomy: dict[str, Any] | None, peaks: dict[str, Any]) -> list[str]:
    """The step-anatomy table: where tuneproof's training step spends its time."""
    if not anatomy:
        return []
    if "error" in anatomy:
        return [f"Step anatomy: failed ({anatomy['error']})", ""]
    steps = max(int(anatomy["profiled_steps"]), 1)
    sec, share = anatomy["seconds"], anatomy["shares"]
    peak = peaks.get("bf16_gflops" if anatomy.get("precision") == "bf16" else "fp32_gflops")
    gemm = anatomy.get("gemm_gflops_per_s")
    labels = {
        "matmul": f"matmul (GEMMs at {fmt(gemm, '.0f')} GFLOP/s on padded tokens, "
        f"{fmt(ratio(gemm, peak), '.0%')} of the {anatomy.get('precision')} peak)",
        "dropout_rng": "dropout masks (CPU random number generation)",
        "optimizer": "optimizer step and zero_grad",
        "other": "everything else (element-wise, norms, embedding backward, casts, clipping)",
    }
    rows = [[labels[k], _secs(sec[k] / steps), fmt(share[k], ".0%")] for k in labels]
    return [
        f"Where a tuneproof step goes ({anatomy['profiled_steps']} steady steps under torch.profiler, "
        "operators' own CPU time):",
        "",
        markdown_table(["part of the step", "per step", "share"], rows),
        "",
    ]


def machine_was_busy(meta: dict[str, Any]) -> bool:
    """Whether other processes shared the cores, judged from the 1-minute load averages.

    The start value is the load before any arm ran; the end value includes the benchmark's own
    arm, which keeps up to ``threads`` cores busy, so only load beyond that counts against it.
    """
    threads = float(meta.get("threads") or 1)
    start, end = meta.get("loadavg_start"), meta.get("loadavg_end")
    before = start is not None and start > max(1.0, 0.5 * threads)
    beside = end is not None and end > threads + 1.0
    return before or beside


def render_markdown(results: dict[str, Any]) -> str:
    meta, summary = results.get("meta", {}), results.get("summary", {})
    peaks = results.get("peak", {})
    versions = meta.get("versions", {})
    lines = [
        f"## tuneproof benchmark ({meta.get('mode', '?')} run, {meta.get('started', '?')})",
        "",
        f"Machine: {meta.get('cpu', '?')}, {meta.get('threads', '?')} threads, native bf16 "
        f"{ {True: 'yes', False: 'no'}.get(meta.get('native_bf16'), '?') }; load average at start "
        f"{fmt(meta.get('loadavg_start'), '.2f')}, at end {fmt(meta.get('loadavg_end'), '.2f')}. "
        f"torch {versions.get('torch', '?')}, transformers {versions.get('transformers', '?')}, "
        f"trl {versions.get('trl', '?')}.",
        "",
    ]
    if meta.get("mode") == "quick":
        lines += ["**Quick run: tiny data and step counts, a smoke check of the harness; not a result.**", ""]
    if machine_was_busy(meta):
        lines += [
            f"**Warning: the machine was busy (load average {fmt(meta.get('loadavg_start'), '.2f')} "
            f"before the run, {fmt(meta.get('loadavg_end'), '.2f')} at its end, for "
            f"{meta.get('threads')} benchmark threads). Other processes distort multi-threaded CPU "
            "timings, ratios included: rerun on a quiet machine.**",
            "",
        ]
    if "error" in peaks:
        lines += [f"Matmul peak: failed ({peaks['error']})", ""]
    elif peaks:
        lines += ["### Measured matmul peak (MFU denominator)", ""]
        rows = [[k, fmt(v["gflops"], ".1f"), str(v["n"])] for k, v in peaks.get("paths", {}).items()]
        lines += [markdown_table(["path", "GFLOP/s", "n (square)"], rows), ""]
        lines += [
            f"bf16 peak {fmt(peaks.get('bf16_gflops'), '.1f')} GFLOP/s ({peaks.get('bf16_path')}), "
            f"fp32 peak {fmt(peaks.get('fp32_gflops'), '.1f')} GFLOP/s ({peaks.get('fp32_path')}).",
            "",
        ]
    cls = summary.get("classification")
    if cls:
        lines += ["### Classification: tuneproof default protocol vs run_glue-style Trainer recipe", ""]
        tta = cls["time_to_accuracy"]
        if "error" in tta:
            lines += [f"Time to accuracy: failed ({tta['error']})", ""]
        else:
            lo, hi = tta["target_interval_95"]
            lines += [
                markdown_table(
                    ["", "recipe (fp32, pad 128)", "tuneproof (default)", "ratio"],
                    [
                        [
                            "test accuracy at end",
                            fmt(tta["recipe_final_accuracy"], ".4f"),
                            fmt(tta["tuneproof_final_accuracy"], ".4f"),
                            "",
                        ],
                        [
                            f"time to reach {tta['target_accuracy']:.4f} (recipe's final)",
                            _secs(tta["recipe_seconds"]),
                            _secs(tta["tuneproof_seconds"])
                            if tta["tuneproof_seconds"] is not None
                            else "not reached",
                            fmt(tta["speedup"], ".2f", "x"),
                        ],
                        [
                            f"time to reach {lo:.4f} (95% interval low)",
                            "",
                            _secs(tta["tuneproof_seconds_to_interval"]),
                            fmt(tta["speedup_to_interval"], ".2f", "x"),
                        ],
                        [
                            "whole training (excl. evaluation)",
                            _secs(tta["recipe_train_seconds"]),
                            _secs(tta["tuneproof_train_seconds"]),
                            fmt(
                                ratio(tta["recipe_train_seconds"], tta["tuneproof_train_seconds"]), ".2f", "x"
                            ),
                        ],
                    ],
                ),
                "",
                f"Test rows: {tta['n_test']}; recipe accuracy 95% interval [{lo:.4f}, {hi:.4f}]. tuneproof's "
                f"checkpoint writes ({_secs(tta['tuneproof_checkpoint_seconds'])}, one per evaluation) are "
                "excluded like evaluation; the clock includes model loading in both arms.",
                "",
            ]
            seeds, finals = tta.get("seeds"), tta.get("final_accuracy_per_seed")
            if seeds and finals:
                lines += [
                    f"Accuracies and times are means over training seeds (recipe {seeds['recipe']}, "
                    f"tuneproof {seeds['tuneproof']}; same rows for every seed). Final test accuracy per "
                    "seed: recipe "
                    + ", ".join(f"{a:.4f}" for a in finals["recipe"])
                    + "; tuneproof "
                    + ", ".join(f"{a:.4f}" for a in finals["tuneproof"])
                    + ".",
                    "",
                ]
        tp, rc = cls["throughput"]["tuneproof"], cls["throughput"]["recipe"]
        lines += [
            markdown_table(
                ["median over repeats", "recipe", "tuneproof", "ratio"],
                [
                    [
                        "real tokens/s",
                        fmt(rc["real_tokens_per_s"], ".0f"),
                        fmt(tp["real_tokens_per_s"], ".0f"),
                        fmt(cls["real_tokens_per_s_ratio"], ".2f", "x"),
                    ],
                    [
                        "samples/s",
                        fmt(rc["samples_per_s"], ".1f"),
                        fmt(tp["samples_per_s"], ".1f"),
                        fmt(ratio(tp["samples_per_s"], rc["samples_per_s"]), ".2f", "x"),
                    ],
                    [
                        "padding efficiency",
                        fmt(rc["padding_efficiency"], ".2f"),
                        fmt(tp["padding_efficiency"], ".2f"),
                        "",
                    ],
                    [
                        "model GFLOP/s (real tokens)",
                        fmt(rc["model_gflops_per_s"], ".1f"),
                        fmt(tp["model_gflops_per_s"], ".1f"),
                        "",
                    ],
                    [
                        "real-token MFU vs machine peak",
                        fmt(rc["mfu_best_peak"], ".1%"),
                        fmt(tp["mfu_best_peak"], ".1%"),
                        "",
                    ],
                    [
                        "real-token MFU vs own precision's peak",
                        fmt(rc["mfu_own_precision_peak"], ".1%"),
                        fmt(tp["mfu_own_precision_peak"], ".1%"),
                        "",
                    ],
                    [
                        "peak RSS",
                        fmt(rc["peak_rss_mib"], ".0f", " MiB"),
                        fmt(tp["peak_rss_mib"], ".0f", " MiB"),
                        fmt(ratio(tp["peak_rss_mib"], rc["peak_rss_mib"]), ".2f", "x"),
                    ],
                ],
            ),
            "",
        ]
        lines += anatomy_lines(cls.get("anatomy"), peaks)
    sft = summary.get("sft")
    if sft:
        lines += ["### SFT: tuneproof sft vs TRL SFTTrainer defaults", ""]
        if "skipped" in sft:
            lines += [f"SFT arm skipped: {sft['skipped']}", ""]
        else:
            arms = [a for a in ("trl", "trl_fp32", "tuneproof") if a in sft["arms"]]
            others = [a for a in arms if a != "tuneproof"]
            per, vs = sft["arms"], sft["versus"]

            def row(
                label: str, key: str, spec: str, unit: str = "", ratio_key: str | None = None
            ) -> list[str]:
                cells = [label] + [fmt(per[a][key], spec, unit) for a in arms]
                return cells + [fmt(vs[o].get(ratio_key), ".2f", "x") if ratio_key else "" for o in others]

            def loss_row() -> list[str]:
                cells = ["held-out answer loss"]
                cells += [fmt((per[a]["heldout"] or {}).get("loss"), ".4f") for a in arms]
                return cells + [_diff(vs[o]["heldout"] or {}) for o in others]

            headers = [""] + [SFT_LABELS[a] for a in arms] + [f"tuneproof vs {SFT_LABELS[o]}" for o in others]
            lines += [
                markdown_table(
                    headers,
                    [
                        row(
                            "real tokens/s (median)",
                            "real_tokens_per_s",
                            ".0f",
                            "",
                            "real_tokens_per_s_ratio",
                        ),
                        row("peak RSS (median)", "peak_rss_mib", ".0f", " MiB", "peak_memory_ratio"),
                        row("padding efficiency", "padding_efficiency", ".2f"),
                        row("real tokens trained", "real_tokens", "d"),
                        loss_row(),
                    ],
                ),
                "",
                "Held-out loss: answer tokens only, scored in fp32 by one scorer; the difference is "
                "tuneproof minus the other arm, with its paired bootstrap 95% interval.",
                "",
            ]
            if sft.get("trl_skipped"):
                lines += [f"TRL defaults arm skipped: {sft['trl_skipped']}", ""]
            errors = [e for a in arms for e in per[a]["errors"]]
            if errors:
                lines += ["Errors: " + "; ".join(errors), ""]
    inf = summary.get("inference")
    if inf:
        lines += ["### Inference: samples/s (median), ratio to the plain pipeline", ""]
        if "error" in inf:
            lines += [f"failed: {inf['error']}", ""]
        else:
            med, rat = inf["median_samples_per_s"], inf["ratio_to_pipeline"]
            batches = sorted({b for per in med.values() for b in per}, key=int)
            rows = []
            for arm in ("pipeline", "predictor", "serve"):
                if arm in med:
                    rows.append(
                        [arm]
                        + [
                            fmt(med[arm].get(b), ".1f")
                            + ("" if arm == "pipeline" else f" ({fmt(rat[arm].get(b), '.2f')}x)")
                            for b in batches
                        ]
                    )
            lines += [markdown_table(["arm"] + [f"batch {b}" for b in batches], rows), ""]
            for arm, why in (inf.get("skipped") or {}).items():
                lines += [f"{arm} skipped: {why}", ""]
    lines += ["### Targets", ""]
    rows = []
    if cls:
        tta = cls["time_to_accuracy"]
        rows.append(
            [
                "classification: time to recipe's accuracy >= 4x sooner",
                fmt(tta.get("speedup"), ".2f", "x") if tta.get("speedup") else "not reached",
                verdict(cls["targets"]["time_to_accuracy"]),
            ]
        )
        rows.append(
            [
                "classification: real-token MFU >= 50% of machine (bf16) peak",
                fmt(cls["throughput"]["tuneproof"]["mfu_best_peak"], ".1%"),
                verdict(cls["targets"]["mfu"]),
            ]
        )
    if sft and "skipped" not in sft:
        against = sft.get("targets_against", "trl")
        main = sft["versus"].get(against, {})
        who = "TRL defaults" if against == "trl" else "TRL + bf16=False (defaults' bf16 emulated here)"
        rows.append(
            [
                f"SFT: >= 1.5x real tokens/s of {who}",
                fmt(main.get("real_tokens_per_s_ratio"), ".2f", "x"),
                verdict(sft["targets"]["tokens_per_second"]),
            ]
        )
        rows.append(
            [
                f"SFT: peak memory <= {who}",
                fmt(main.get("peak_memory_ratio"), ".2f", "x"),
                verdict(sft["targets"]["peak_memory"]),
            ]
        )
        rows.append(
            [
                f"SFT: held-out loss not worse than {who}, same real tokens",
                _diff(main.get("heldout") or {}),
                verdict(sft["targets"]["heldout_loss"]),
            ]
        )
    elif sft:
        rows.append(["SFT targets", "skipped", verdict(None)])
    if inf and "error" not in inf:
        rows.append(
            [
                "inference: predict >= 2.5x pipeline at batch 32",
                fmt(inf["ratio_to_pipeline"].get("predictor", {}).get("32"), ".2f", "x"),
                verdict(inf["targets"]["predictor_b32"]),
            ]
        )
    lines += [markdown_table(["target", "measured", "verdict"], rows), ""]
    if meta.get("mode") == "quick":
        lines += ["Verdicts of a quick run say nothing about the targets: run the full benchmark.", ""]
    return "\n".join(lines)
