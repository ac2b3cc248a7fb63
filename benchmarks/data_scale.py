"""The data stage at 10k, 100k and 1M rows, before (commit 0e4c375) and after, in one run.

    nice .venv/bin/python benchmarks/data_scale.py                      # 10k, 100k, 1M
    nice .venv/bin/python benchmarks/data_scale.py --sizes 10000,100000 --old-max 100000

Synthetic two-label texts of 8-40 words (with 2% near and 1% exact repeats, so every cleaning stage
has work), prepared with the main job's cleaning and leakage settings by calling ``prepare_data``
alone, each size in a fresh process whose peak memory (RSS of the process and its workers, sampled
every 50 ms) and time are taken from outside. The code before is today's code at its commit,
extracted with ``git archive`` and put first on PYTHONPATH of its child; it is run only up to
``--old-max`` rows, because at ~33 KB a row it cannot hold a million on a 24 GB machine.

Also: the near-duplicate stage against datasketch's MinHashLSH (the peer, one MinHash per text) on
the same rows (time, pairs found), the recall of today's pairs on the main job's data, and the
signature step on 1 and 2 processes. Output: a JSON log under benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "0e4c375"
PROTOCOL = """name: data-scale
model: {{source: m/m, max_length: 128}}
data: {{files: [{path}], text_column: text, label_column: label, labels: [pos, neg]}}
cleaning:
  {{near_duplicates: {{threshold: 0.9, shingle_chars: 5}}, over_length: truncate, conflicting_labels: drop}}
split: {{train: 0.8, validation: 0.1, test: 0.1}}
leakage: {{exact: true, near: true, action: remove}}
"""


def synthetic_csv(path: Path, n: int, seed: int = 0) -> None:
    """Two-label texts of 8-40 words from a 5,000-word vocabulary; 2% are a copy of an earlier row
    with one word changed (near duplicates, usually above Jaccard 0.9 for long texts) and 1% are
    exact copies, so the de-duplication stages remove rows as they would on real exports."""
    import csv

    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = ["".join(rng.choice(letters, rng.integers(2, 9))) for _ in range(5000)]
    zipf = 1.0 / np.arange(1, len(vocab) + 1)
    zipf /= zipf.sum()
    texts: list[list[str]] = []
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(n):
            u = rng.random()
            if texts and u < 0.02:
                words = list(texts[int(rng.integers(len(texts)))])
                words[int(rng.integers(len(words)))] = vocab[int(rng.integers(len(vocab)))]
            elif texts and u < 0.03:
                words = texts[int(rng.integers(len(texts)))]
            else:
                words = [vocab[j] for j in rng.choice(len(vocab), int(rng.integers(8, 41)), p=zipf)]
            if len(texts) < 20_000:  # repeats come from a window, as in an export of recent tickets
                texts.append(words)
            else:
                texts[i % 20_000] = words
            label = "pos" if rng.random() < 0.5 else "neg"
            w.writerow([" ".join(words), label])


def _child(protocol_file: str) -> None:
    """Runs in a fresh process with the code under test first on sys.path."""
    from tuneproof.data.prepare import prepare_data
    from tuneproof.protocol import parse_protocol

    protocol = parse_protocol(Path(protocol_file).read_text())
    start = time.perf_counter()
    prepared = prepare_data(protocol, Path(protocol_file).parent)
    seconds = time.perf_counter() - start
    report = prepared.report
    out = {
        "seconds": seconds,
        "splits": {k: v["rows"] for k, v in report["splits"].items()},
        "split_sha256": {k: v["sha256"] for k, v in report["splits"].items()},
        "removed": report["removed"],
    }
    print("RESULT " + json.dumps(out))


def _run_measured(code_root: Path, protocol_file: Path, timeout: float) -> dict[str, Any]:
    import psutil

    env = {**os.environ, "PYTHONPATH": str(code_root), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(protocol_file)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [ps, *ps.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        if time.perf_counter() - start > timeout:
            proc.kill()
            return {"error": f"over {timeout:.0f} s", "peak_rss_gb": peak / 1e9}
        time.sleep(0.05)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        return {"error": err.strip().splitlines()[-1:] or ["no result"], "peak_rss_gb": peak / 1e9}
    res = json.loads(lines[-1][len("RESULT ") :])
    res.update(peak_rss_gb=peak / 1e9, process_wall_s=wall)
    return res


def _exponent(sizes: list[int], values: list[float]) -> float | None:
    pts = [(math.log(n), math.log(v)) for n, v in zip(sizes, values, strict=True) if v > 0]
    if len(pts) < 2:
        return None
    x, y = np.array(pts).T
    return float(np.polyfit(x, y, 1)[0])


def _extract_before(dest: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE], check=True, capture_output=True)
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def _main_job_texts() -> list[str]:
    """The main job's review texts as the near-duplicate stage sees them (after exact de-duplication)."""
    from tuneproof.data.clean import dedup_key, normalize_text
    from tuneproof.data.prepare import read_columns
    from tuneproof.protocol import load_protocol

    loaded = load_protocol(ROOT / "examples" / "review-sentiment.yaml")
    cols, *_ = read_columns(loaded.protocol, loaded.base_dir)
    seen: set[str] = set()
    out = []
    for t in cols["text"]:
        t = normalize_text(t, loaded.protocol.cleaning)
        k = dedup_key(t)
        if t and k not in seen:
            seen.add(k)
            out.append(t)
    return out


def _all_pairs_peer(texts: list[str], spec: Any) -> tuple[set[tuple[int, int]], float]:
    """Every confirmed pair (earlier, later) as today's index finds it: datasketch MinHashLSH,
    one MinHash per text, each text queried before it is inserted."""
    from tuneproof.data.clean import NearDuplicateIndex

    start = time.perf_counter()
    index = NearDuplicateIndex(spec)
    pairs = set()
    for j, t in enumerate(texts):
        for key, _ in index.query(t):
            pairs.add((int(key), j))
        index.add(str(j), t)
    return pairs, time.perf_counter() - start


def _all_pairs_new(
    texts: list[str], spec: Any, workers: int | None = None
) -> tuple[set[tuple[int, int]], float]:
    from tuneproof.data import near_dup
    from tuneproof.data.clean import near_key, shingle_set

    start = time.perf_counter()
    sig = near_dup.signatures([near_key(t, spec) for t in texts], spec.shingle_chars, spec.num_perm, workers)
    buckets = near_dup.LshBuckets(sig, spec.threshold)
    cache = near_dup.ShingleCache(lambda i: shingle_set(texts[i], spec))
    pairs = set()
    for j in buckets.rows_with_candidates():
        for i, _ in near_dup.confirmed(buckets, j, cache, spec.threshold, lambda i: True):
            pairs.add((i, j))
        buckets.insert(j)
    return pairs, time.perf_counter() - start


def near_dup_arms(work: Path, peer_rows: int, parallel_rows: int) -> dict[str, Any]:
    import csv

    from tuneproof.data import near_dup
    from tuneproof.data.clean import near_key
    from tuneproof.protocol.schema import NearDuplicateSpec

    spec = NearDuplicateSpec(threshold=0.9, shingle_chars=5)
    out: dict[str, Any] = {}
    texts = _main_job_texts()
    old, t_old = _all_pairs_peer(texts, spec)
    new, t_new = _all_pairs_new(texts, spec, workers=1)
    out["main_job"] = {
        "rows": len(texts),
        "pairs_today": len(old),
        "pairs_new": len(new),
        "recall_of_today": len(old & new) / max(1, len(old)),
        "new_not_today": len(new - old),
        "seconds_today": t_old,
        "seconds_new": t_new,
        "speedup": t_old / t_new,
    }
    print("main job near duplicates", out["main_job"], flush=True)
    csv_path = work / f"rows-{max(peer_rows, parallel_rows)}.csv"
    synthetic_csv(csv_path, max(peer_rows, parallel_rows), seed=1)
    with csv_path.open(encoding="utf-8") as fh:
        rows = [r[0] for r in list(csv.reader(fh))[1:]]
    peer_texts = list(dict.fromkeys(rows[:peer_rows]))
    old, t_old = _all_pairs_peer(peer_texts, spec)
    new, t_new = _all_pairs_new(peer_texts, spec, workers=1)
    out["synthetic_peer"] = {
        "rows": len(peer_texts),
        "pairs_datasketch_minhashlsh": len(old),
        "pairs_new": len(new),
        "recall_of_datasketch": len(old & new) / max(1, len(old)),
        "seconds_datasketch": t_old,
        "seconds_new": t_new,
        "speedup": t_old / t_new,
    }
    print("synthetic near duplicates vs datasketch", out["synthetic_peer"], flush=True)
    keys = [near_key(t, spec) for t in rows[:parallel_rows]]
    timings = {}
    sigs = {}
    for workers in (1, 2):
        start = time.perf_counter()
        sigs[workers] = near_dup.signatures(keys, spec.shingle_chars, spec.num_perm, workers=workers)
        timings[workers] = time.perf_counter() - start
    out["signatures_parallel"] = {
        "rows": len(keys),
        "seconds_1_process": timings[1],
        "seconds_2_processes": timings[2],
        "speedup": timings[1] / timings[2],
        "identical": bool((sigs[1] == sigs[2]).all()),
    }
    print("signatures, 1 vs 2 processes", out["signatures_parallel"], flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated row counts")
    ap.add_argument("--old-max", type=int, default=100_000, help="largest size the code before runs at")
    ap.add_argument("--peer-rows", type=int, default=30_000, help="rows for the datasketch peer arm")
    ap.add_argument("--parallel-rows", type=int, default=200_000, help="rows for the 1-vs-2-process arm")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per child before it is killed")
    ap.add_argument("--near-only", action="store_true", help="only the near-duplicate arms")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "data_scale.json")
    args = ap.parse_args()
    # The script's folder (benchmarks/) would shadow real packages (benchmarks/coverage.py hides the
    # coverage package numba looks for); import the code under test from PYTHONPATH only.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    if args.child:
        _child(args.child)
        return
    sizes = [] if args.near_only else [int(s) for s in args.sizes.split(",")]
    result: dict[str, Any] = {
        "sizes": sizes,
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "cpus": len(os.sched_getaffinity(0)),
        "before_commit": BEFORE,
        "runs": {"before": {}, "after": {}},
    }
    with tempfile.TemporaryDirectory(prefix="data-scale-") as tmp:
        work = Path(tmp)
        before = _extract_before(work / "before")
        for n in sizes:
            csv_path = work / f"rows-{n}.csv"
            synthetic_csv(csv_path, n)
            protocol_file = work / f"protocol-{n}.yaml"
            protocol_file.write_text(PROTOCOL.format(path=csv_path))
            for arm, code in (("after", ROOT), ("before", before)):
                if arm == "before" and n > args.old_max:
                    result["runs"][arm][str(n)] = {"skipped": f"over --old-max {args.old_max} (memory)"}
                    continue
                res = _run_measured(code, protocol_file, args.timeout)
                res["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
                result["runs"][arm][str(n)] = res
                print(arm, n, json.dumps(res), flush=True)
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(result, indent=1) + "\n")  # so far, if stopped later
            b, a = result["runs"]["before"].get(str(n), {}), result["runs"]["after"][str(n)]
            if "split_sha256" in b and "split_sha256" in a:
                a["same_splits_as_before"] = a["split_sha256"] == b["split_sha256"]
        for arm in ("before", "after"):
            done = [(int(n), r) for n, r in result["runs"][arm].items() if "seconds" in r]
            ns = [n for n, _ in done]
            result[f"{arm}_time_exponent"] = _exponent(ns, [r["seconds"] for _, r in done])
            result[f"{arm}_memory_exponent"] = _exponent(ns, [r["peak_rss_gb"] for _, r in done])
        result["near_duplicates"] = near_dup_arms(work, args.peer_rows, args.parallel_rows)
    result["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    for arm in ("before", "after"):
        for n, r in result["runs"][arm].items():
            if "seconds" in r:
                print(f"{arm:6} {int(n):>9,} rows  {r['seconds']:7.1f} s  {r['peak_rss_gb']:5.2f} GB peak")
            else:
                print(f"{arm:6} {int(n):>9,} rows  {r.get('skipped') or r.get('error')}")
        print(
            f"{arm:6} growth exponent: time {result[f'{arm}_time_exponent']}, "
            f"memory {result[f'{arm}_memory_exponent']}"
        )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
