"""Inference backends of one run side by side, in one process: speed next to each export's accuracy.

    python benchmarks/export_bench.py runs/<run>                 # exports onnx + onnx-int8 if missing
    python benchmarks/export_bench.py runs/<run> --texts 256 --repeats 3

Arms, all on the run's own test texts and the same ``Predictor.predict`` call (features, length-sorted
batches, response format), so only the forward pass differs:

* ``torch``: the packaged model as ``tuneproof predict`` runs it (bf16 autocast where the CPU has
  native bf16, fp32 otherwise);
* ``onnx``: ``--backend onnx``, the fp32 graph in ONNX Runtime;
* ``onnx-int8``: ``--backend onnx-int8``, the dynamically quantised graph;
* ``pipeline``: a plain ``transformers.pipeline("text-classification")`` loop on the packaged folder.

Each request carries ``b`` texts (1, 8, 32, 128) with ``batch_size=b``; samples/s = texts / seconds
over the whole sequence of requests. Arms are interleaved per repeat, rotating which goes first, after
one warm-up request each; the table shows medians. The accuracy columns are each export's
re-verification on the full test split (``exports/<format>/verification.json``): the paired bootstrap
difference export minus original with its interval, and the identical-prediction rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python benchmarks/export_bench.py` puts only benchmarks/ on the path
    sys.path.insert(0, str(REPO))

BATCHES = (1, 8, 32, 128)
EXPORTS = ("onnx", "onnx-int8")
TARGET = 4.0  # the best backend vs the plain pipeline at batch 32


def _arms(run_dir: Path) -> dict[str, Callable[[list[str], int], Any]]:
    from transformers import pipeline

    from tuneproof.serve.predict import Predictor

    predictors = {
        "torch": Predictor.load(run_dir),
        **{b: Predictor.load(run_dir, backend=b) for b in EXPORTS},
    }
    model = str(run_dir / "model")
    pipe = pipeline("text-classification", model=model, tokenizer=model, device="cpu")
    max_length = predictors["torch"].info.max_length

    def predictor_arm(p: Any) -> Callable[[list[str], int], Any]:
        def call(chunk: list[str], b: int) -> Any:
            p.batch_size = b
            return p.predict(chunk)

        return call

    arms: dict[str, Callable[[list[str], int], Any]] = {k: predictor_arm(p) for k, p in predictors.items()}
    arms["pipeline"] = lambda chunk, b: pipe(chunk, batch_size=b, truncation=True, max_length=max_length)
    return arms


def measure(run_dir: Path, texts: list[str], n_b1: int, repeats: int) -> dict[str, dict[str, float]]:
    arms = _arms(run_dir)
    order = list(arms)
    results: dict[str, dict[str, list[float]]] = {a: {} for a in arms}
    for b in BATCHES:
        n = n_b1 if b == 1 else len(texts)
        chunks = [texts[i : i + b] for i in range(0, n, b)]
        for arm in order:  # warm-up for this batch shape
            arms[arm](chunks[0], b)
        for rep in range(repeats):
            for arm in order[rep % len(order) :] + order[: rep % len(order)]:
                t = time.perf_counter()
                for chunk in chunks:
                    arms[arm](chunk, b)
                results[arm].setdefault(str(b), []).append(sum(map(len, chunks)) / (time.perf_counter() - t))
        print(
            f"batch {b}: " + ", ".join(f"{a} {statistics.median(results[a][str(b)]):.1f}/s" for a in order),
            flush=True,
        )
    return {a: {b: statistics.median(v) for b, v in r.items()} for a, r in results.items()}


def accuracy(run_dir: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for fmt in EXPORTS:
        folder = run_dir / "exports" / fmt
        v = json.loads((folder / "verification.json").read_text())
        export = json.loads((folder / "tuneproof_export.json").read_text())
        ev = v["evaluation"]
        out[fmt] = {
            "released": v["released"],
            "quantization": export.get("quantization"),
            "model_file_mb": round((folder / export["model_file"]).stat().st_size / 1e6, 2),
            "n": v["n"],
            "accuracy": ev["model"]["accuracy"],
            "accuracy_minus_original": ev["comparisons"]["original"]["accuracy"],
            "macro_f1_minus_original": ev["comparisons"]["original"]["macro_f1"],
            "identical_predictions": ev["model"]["identical_predictions"],
            "max_probability_difference": ev["model"]["max_probability_difference"],
        }
    return out


def render(result: dict[str, Any]) -> str:
    speed, acc = result["samples_per_second"], result["accuracy"]
    base = speed["pipeline"]["32"]
    lines = [
        "| backend | "
        + " | ".join(f"b={b}" for b in BATCHES)
        + " | vs pipeline at b=32 | accuracy - original [95% CI] | identical [95% CI] |",
        "|---|" + "---|" * (len(BATCHES) + 3),
    ]
    for arm, per_b in speed.items():
        a = acc.get(arm)
        if a:
            d, i = a["accuracy_minus_original"], a["identical_predictions"]
            diff = f"{d['diff']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"
            same = f"{i['value']:.4f} [{i['low']:.4f}, {i['high']:.4f}]"
        else:
            diff = same = "(the original)" if arm == "torch" else "n/a"
        cells = " | ".join(f"{per_b[str(b)]:.1f}" for b in BATCHES)
        lines.append(f"| {arm} | {cells} | {per_b['32'] / base:.2f}x | {diff} | {same} |")
    sizes = {a: acc[a]["model_file_mb"] for a in EXPORTS if a in acc}
    lines.append("")
    lines.append("Model file: " + ", ".join(f"{a} {mb:.1f} MB" for a, mb in sizes.items()))
    best = max((a for a in speed if a != "pipeline"), key=lambda a: speed[a]["32"])
    lines.append("")
    lines.append(
        f"Best backend at b=32: {best}, {speed[best]['32'] / base:.2f}x the plain pipeline "
        f"(target {TARGET:g}x)."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--texts", type=int, default=256, help="test texts per request sequence (b > 1)")
    ap.add_argument("--texts-b1", type=int, default=48, help="test texts at batch 1")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch and ONNX Runtime threads (default: all)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    import pandas as pd
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir: Path = args.run_dir
    if not all((run_dir / "exports" / f / "verification.json").is_file() for f in EXPORTS):
        from tuneproof.export.stage import export_run

        export_run(run_dir, list(EXPORTS))
    texts = pd.read_parquet(run_dir / "data" / "test.parquet")["text"].tolist()[: args.texts]
    started = time.time()
    result: dict[str, Any] = {
        "run": str(run_dir),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(),
            "load_average_at_start": os.getloadavg(),
        },
        "texts": len(texts),
        "texts_batch1": args.texts_b1,
        "repeats": args.repeats,
        "samples_per_second": measure(run_dir, texts, args.texts_b1, args.repeats),
        "accuracy": accuracy(run_dir),
    }
    result["seconds"] = round(time.time() - started, 1)
    result["load_average_at_end"] = os.getloadavg()
    table = render(result)
    result["table"] = table
    out = args.out or REPO / "benchmarks" / "results" / f"export-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(table)
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
