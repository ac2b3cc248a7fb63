"""Serving benchmark: tuneproof's server against one-request-at-a-time serving and a plain
FastAPI + `pipeline` server, on the same packaged model, in one run, on 127.0.0.1 only.

    python benchmarks/serve_bench.py                   # builds (once) benchmarks/serve-bench.yaml
    python benchmarks/serve_bench.py --run runs/<run>  # an existing packaged classification run
    python benchmarks/serve_bench.py --quick           # smoke check of the harness (about 2 minutes)
    python benchmarks/serve_bench.py --render benchmarks/results/serve-<timestamp>.json

Arms (each its own server subprocess, all started once and kept idle while another is measured):
  tuneproof   `tuneproof serve` with its defaults: dynamic batching across requests
  one-by-one  the same `tuneproof serve` with `--batch-window-ms 0 --batch-max-texts 1`: every
              request is its own `Predictor.predict` call (its own texts still go in one forward
              pass), so only batching across requests differs from the first arm
  plain       benchmarks/serve_plain.py: FastAPI + transformers `pipeline("text-classification")`

Load: closed-loop clients (httpx, asyncio) at each concurrency, each client sending its next request
when the previous one is answered; every load stops after --requests requests or --seconds seconds,
whichever comes first. Loads are interleaved (for each repeat and concurrency, every arm in turn,
rotating which goes first) and reported as medians over repeats and as ratios. Requests carry
--texts-per-request real Rotten Tomatoes review snippets, the same sequence for every arm.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python benchmarks/serve_bench.py` puts only benchmarks/ on the path
    sys.path.insert(0, str(REPO))

from benchmarks.stats import median, ratio  # noqa: E402

ARMS = ("tuneproof", "one-by-one", "plain")
PROTOCOL = REPO / "benchmarks" / "serve-bench.yaml"
TARGET_THROUGHPUT_RATIO = 3.0  # issue 13: at least 3x the plain server's requests/s at concurrency 32


@dataclasses.dataclass
class Plan:
    mode: str
    threads: int
    concurrency: tuple[int, ...] = (1, 8, 32)
    repeats: int = 2
    requests: int = 600  # per load, at most
    seconds: float = 20.0  # per load, at most (no new request after this)
    texts_per_request: int = 4
    warmup_requests: int = 16
    seed: int = 13
    client_timeout_s: float = 60.0
    server_start_timeout_s: float = 300.0


def full_plan(threads: int) -> Plan:
    return Plan(mode="full", threads=threads)


def quick_plan(threads: int) -> Plan:
    return Plan(mode="quick", threads=threads, repeats=1, requests=40, seconds=4.0, warmup_requests=4)


# -- requests ----------------------------------------------------------------------------------


def review_texts(seed: int) -> list[str]:
    """Rotten Tomatoes review snippets (fresh/rotten rows only, de-duplicated), in a seeded order."""
    from benchmarks.data import rotten_tomatoes

    texts = [str(t) for t in rotten_tomatoes()["text"]]
    random.Random(seed).shuffle(texts)
    return texts


def make_payloads(texts: Sequence[str], per_request: int, n: int) -> list[dict[str, list[str]]]:
    """``n`` request bodies of ``per_request`` consecutive texts each, wrapping around the texts."""
    if not texts or per_request < 1:
        raise ValueError("need at least one text and one text per request")
    return [
        {"texts": [texts[(i * per_request + k) % len(texts)] for k in range(per_request)]} for i in range(n)
    ]


# -- load --------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear between order statistics; None for no values."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


async def run_load(
    client: Any,
    payloads: Sequence[dict[str, Any]],
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    path: str = "/predict",
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """``concurrency`` closed-loop clients on one ``httpx.AsyncClient``; bounded in count and time.

    No request starts after ``max_requests`` were issued or ``max_seconds`` passed; the ones in flight
    finish (bounded by the client's timeout). Throughput counts 200 answers over the time from the
    first request to the last answer.
    """
    issued = 0
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors: list[str] = []
    texts_ok = 0
    t0 = clock()
    stop_at = t0 + max_seconds
    last_end = t0

    async def one_client() -> None:
        nonlocal issued, texts_ok, last_end
        while issued < max_requests and clock() < stop_at:
            body = payloads[issued % len(payloads)]
            issued += 1
            start = clock()
            try:
                r = await client.post(path, json=body)
            except Exception as exc:  # a dropped connection or a client timeout: counted, never hidden
                errors.append(f"{type(exc).__name__}: {exc}")
                last_end = max(last_end, clock())
                continue
            end = clock()
            last_end = max(last_end, end)
            statuses[str(r.status_code)] = statuses.get(str(r.status_code), 0) + 1
            if r.status_code == 200:
                latencies.append(end - start)
                texts_ok += len(body["texts"])

    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    elapsed = last_end - t0
    ok = len(latencies)
    return {
        "concurrency": concurrency,
        "issued": issued,
        "ok": ok,
        "statuses": statuses,
        "errors": len(errors),
        "error_examples": errors[:3],
        "seconds": elapsed,
        "rps": ok / elapsed if elapsed > 0 and ok else None,
        "texts_per_s": texts_ok / elapsed if elapsed > 0 and texts_ok else None,
        "p50_ms": _ms(percentile(latencies, 50)),
        "p99_ms": _ms(percentile(latencies, 99)),
        "mean_ms": _ms(sum(latencies) / ok if ok else None),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


# -- tuneproof's own metrics -------------------------------------------------------------------

BATCH_SERIES = ("tuneproof_batch_texts", "tuneproof_batch_requests", "tuneproof_batch_duration_seconds")


def batch_counters(metrics_text: str) -> dict[str, float]:
    """``<name>_sum`` and ``<name>_count`` of the batch histograms in a Prometheus exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name not in BATCH_SERIES:
            continue
        for sample in family.samples:
            if sample.name in (f"{family.name}_sum", f"{family.name}_count"):
                out[sample.name] = out.get(sample.name, 0.0) + float(sample.value)
    return out


def batch_stats(before: dict[str, float], after: dict[str, float]) -> dict[str, float | None]:
    """What the server's batcher did between two scrapes: batches, mean requests/texts per batch, mean ms."""

    def delta(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    batches = delta("tuneproof_batch_texts_count")
    if batches <= 0:
        return {"batches": 0, "requests_per_batch": None, "texts_per_batch": None, "batch_ms": None}
    duration_n = delta("tuneproof_batch_duration_seconds_count")
    return {
        "batches": batches,
        "requests_per_batch": delta("tuneproof_batch_requests_sum") / batches,
        "texts_per_batch": delta("tuneproof_batch_texts_sum") / batches,
        "batch_ms": 1000 * delta("tuneproof_batch_duration_seconds_sum") / duration_n if duration_n else None,
    }


# -- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command(arm: str, run_dir: Path, port: int, deployable: bool) -> list[str]:
    """The command line of one arm's server, always bound to 127.0.0.1."""
    if arm == "plain":
        return [sys.executable, "-m", "benchmarks.serve_plain", str(run_dir / "model"), "--port", str(port)]
    cmd = [
        sys.executable,
        "-m",
        "tuneproof",
        "serve",
        str(run_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    # The same generous deadlines for both tuneproof arms: the plain server has none, so a refusal
    # (503) must not stand in for a slow answer in the latency figures.
    cmd += ["--queue-deadline-s", "30", "--request-timeout-s", "60"]
    if not deployable:
        cmd.append("--allow-rejected")
    if arm == "one-by-one":
        cmd += ["--batch-window-ms", "0", "--batch-max-texts", "1"]
    elif arm != "tuneproof":
        raise ValueError(f"unknown arm {arm!r}; choose from {', '.join(ARMS)}")
    return cmd


@dataclasses.dataclass
class Server:
    arm: str
    base: str
    proc: subprocess.Popen[bytes]
    log: Path


def server_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
    )
    return env


def _wait_ready(server: Server, path: str, timeout: float) -> None:
    import httpx

    t0 = time.monotonic()
    while True:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.arm} server exited {server.proc.returncode}; see {server.log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(server.base + path, timeout=5).status_code == 200:
                return
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"{server.arm} server not ready after {timeout:.0f} s; see {server.log}")
        time.sleep(0.2)


def _stop(server: Server) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=10)


@contextlib.contextmanager
def servers(plan: Plan, run_dir: Path, deployable: bool, logs: Path) -> Iterator[dict[str, Server]]:
    """Every arm's server started (one after another, so they do not compete while loading) and
    stopped on exit, whatever happens in between."""
    started: dict[str, Server] = {}
    try:
        for arm in ARMS:
            port = free_port()
            log = logs / f"server-{arm}.log"
            with log.open("wb") as fh:
                proc = subprocess.Popen(
                    server_command(arm, run_dir, port, deployable),
                    cwd=REPO,
                    env=server_env(plan.threads),
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                )
            started[arm] = Server(arm, f"http://127.0.0.1:{port}", proc, log)
            print(f"[serve-bench] starting {arm} on 127.0.0.1:{port} ...", file=sys.stderr, flush=True)
            _wait_ready(started[arm], "/health" if arm == "plain" else "/ready", plan.server_start_timeout_s)
        yield started
    finally:
        for server in started.values():
            _stop(server)


# -- the run -----------------------------------------------------------------------------------


def protocol_key(protocol: Path) -> str:
    return hashlib.sha256(protocol.read_bytes()).hexdigest()[:12]


def packaged_run(protocol: Path, cache: Path, threads: int) -> Path:
    """The run folder of ``protocol``, trained and packaged once per protocol content, then reused."""
    parent = cache / f"serve-run-{protocol_key(protocol)}"
    done = sorted(p.parent.parent for p in parent.glob("*/model/tuneproof_model.json"))
    if done:
        return done[-1]
    parent.mkdir(parents=True, exist_ok=True)
    print(
        f"[serve-bench] training and packaging {protocol.name} into {parent} ...", file=sys.stderr, flush=True
    )
    res = subprocess.run(
        [sys.executable, "-m", "tuneproof", "run", str(protocol), "--output-dir", str(parent)],
        cwd=REPO,
        env=server_env(threads),
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode not in (0, 4):  # 4: a gate failed; the model is packaged all the same
        raise RuntimeError(f"tuneproof run exited {res.returncode}:\n{res.stderr[-3000:]}")
    run_dir = Path(res.stdout.strip().splitlines()[-1])
    return run_dir if run_dir.is_absolute() else REPO / run_dir


def run_info(run_dir: Path) -> dict[str, Any]:
    from tuneproof.export.package import MODEL_INFO

    path = run_dir / "model" / MODEL_INFO
    if not path.is_file():
        raise SystemExit(f"{run_dir} is not a packaged run ({path} is missing)")
    info = json.loads(path.read_text())
    if info.get("task") != "classification":
        raise SystemExit(
            f"{run_dir}: the benchmark serves a classification model, this run is {info.get('task')!r}"
        )
    return dict(info)


def order_for(rep: int, level_index: int, arms: Sequence[str] = ARMS) -> list[str]:
    """Arms in turn, rotating which goes first from one load group to the next."""
    k = (rep * 7 + level_index) % len(arms)  # 7: not a multiple of 3, so repeats rotate too
    return list(arms[k:]) + list(arms[:k])


async def _agreement(bases: dict[str, str], payloads: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Share of texts on which each arm's top label agrees with tuneproof's (a correctness check:
    the arms must serve the same model; bf16 against fp32 may flip a borderline text or two)."""
    import httpx

    labels: dict[str, list[str]] = {}
    async with httpx.AsyncClient(timeout=60) as client:
        for arm, base in bases.items():
            labels[arm] = []
            for body in payloads:
                r = await client.post(base + "/predict", json=body)
                r.raise_for_status()
                # both servers answer {"label": ...} per text (tuneproof adds probabilities, the
                # pipeline a score)
                labels[arm] += [str(p["label"]) for p in r.json()["predictions"]]
    ref = labels["tuneproof"]
    return {arm: sum(a == b for a, b in zip(ls, ref, strict=True)) / len(ref) for arm, ls in labels.items()}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a server process and its children (uvicorn runs in the process)."""
    import psutil

    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


async def measure(
    plan: Plan, bases: dict[str, str], payloads: list[dict[str, Any]], pids: dict[str, int] | None = None
) -> list[dict[str, Any]]:
    import httpx

    loads: list[dict[str, Any]] = []
    warm = payloads[: plan.warmup_requests]
    for base in bases.values():
        async with httpx.AsyncClient(base_url=base, timeout=plan.client_timeout_s) as client:
            await run_load(client, warm, 2, len(warm), plan.seconds)
    for rep in range(plan.repeats):
        for li, c in enumerate(plan.concurrency):
            for arm in order_for(rep, li):
                limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
                async with httpx.AsyncClient(
                    base_url=bases[arm], timeout=plan.client_timeout_s, limits=limits
                ) as client:
                    before = batch_counters((await client.get("/metrics")).text) if arm != "plain" else {}
                    cpu0 = cpu_seconds(pids[arm]) if pids else None
                    load = await run_load(client, payloads, c, plan.requests, plan.seconds)
                    if cpu0 is not None and pids and load["ok"]:
                        # the server's CPU per answered request: what the 2 cores were spent on
                        load["server_cpu_ms_per_request"] = (
                            1000 * (cpu_seconds(pids[arm]) - cpu0) / load["ok"]
                        )
                    if arm != "plain":
                        load["batching"] = batch_stats(
                            before, batch_counters((await client.get("/metrics")).text)
                        )
                load.update(arm=arm, rep=rep, loadavg_1m=os.getloadavg()[0])
                loads.append(load)
                print(
                    f"[serve-bench] r{rep} c={c:<3} {arm:<10} {load['ok']:>4} ok  "
                    f"{load['rps'] or 0:7.1f} req/s  p50 {load['p50_ms'] or 0:7.1f} ms  "
                    f"p99 {load['p99_ms'] or 0:7.1f} ms  statuses {load['statuses']} errors {load['errors']}",
                    file=sys.stderr,
                    flush=True,
                )
    return loads


def summarize(loads: Sequence[dict[str, Any]], concurrency: Sequence[int]) -> dict[str, Any]:
    """Medians over repeats per arm and concurrency, the ratios, and the issue's target verdict."""
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for arm in ARMS:
        table[arm] = {}
        for c in concurrency:
            mine = [x for x in loads if x["arm"] == arm and x["concurrency"] == c]
            if not mine:
                continue
            non_ok: dict[str, int] = {}
            for x in mine:
                for status, n in x["statuses"].items():
                    if status != "200":
                        non_ok[status] = non_ok.get(status, 0) + n
            row: dict[str, Any] = {
                "loads": len(mine),
                "ok": sum(x["ok"] for x in mine),
                "non_200": non_ok,
                "errors": sum(x["errors"] for x in mine),
            }
            for key in ("rps", "texts_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_request"):
                row[key] = median(x.get(key) for x in mine)
            batching = [x["batching"] for x in mine if x.get("batching")]
            for key in ("requests_per_batch", "texts_per_batch", "batch_ms"):
                row[key] = median(b[key] for b in batching) if batching else None
            table[arm][str(c)] = row

    def cell(arm: str, c: int, key: str) -> float | None:
        value = table.get(arm, {}).get(str(c), {}).get(key)
        return None if value is None else float(value)

    ratios = {
        str(c): {
            "rps_vs_plain": ratio(cell("tuneproof", c, "rps"), cell("plain", c, "rps")),
            "rps_vs_one_by_one": ratio(cell("tuneproof", c, "rps"), cell("one-by-one", c, "rps")),
            "p99_vs_plain": ratio(cell("tuneproof", c, "p99_ms"), cell("plain", c, "p99_ms")),
        }
        for c in concurrency
    }
    top = str(max(concurrency))
    tp, p99 = ratios[top]["rps_vs_plain"], ratios[top]["p99_vs_plain"]
    target = {
        "concurrency": int(top),
        "throughput_ratio": tp,
        "p99_ratio": p99,
        "met": tp is not None and p99 is not None and tp >= TARGET_THROUGHPUT_RATIO and p99 < 1.0,
    }
    return {"table": table, "ratios": ratios, "target": target}


def _f(value: Any, fmt: str = ".1f") -> str:
    return "n/a" if value is None else format(value, fmt)


def render_markdown(results: dict[str, Any]) -> str:
    meta, summary = results["meta"], results["summary"]
    plan = results["plan"]
    lines = [
        f"## Serving benchmark ({meta['mode']}, {meta['started']})",
        "",
        f"Model: `{meta['run']}` ({meta['model_precision']} in tuneproof's arms; the plain pipeline loads "
        f"the same folder in its default dtype). {plan['texts_per_request']} Rotten Tomatoes review "
        f"snippets per request; each load at most {plan['requests']} requests or {plan['seconds']:g} s; "
        f"{plan['repeats']} interleaved repeat(s), medians shown. Machine: {meta['cpu']}, "
        f"{meta['cpu_count']} cores, {plan['threads']} torch threads per server; load average (1 min) "
        f"{meta['loadavg_start']:.2f} at the start, {meta['loadavg_end']:.2f} at the end, "
        f"{_f(meta.get('loadavg_during_max'), '.2f')} at most after a load.",
        "",
        "| arm | concurrency | req/s | texts/s | p50 ms | p99 ms | non-200 | errors "
        "| server CPU ms/request | requests/batch | texts/batch | batch ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for arm, rows in summary["table"].items():
        for c, row in rows.items():
            non_ok = ", ".join(f"{k}: {v}" for k, v in sorted(row["non_200"].items())) or "0"
            lines.append(
                f"| {arm} | {c} | {_f(row['rps'])} | {_f(row['texts_per_s'])} | {_f(row['p50_ms'])} | "
                f"{_f(row['p99_ms'])} | {non_ok} | {row['errors']} | "
                f"{_f(row.get('server_cpu_ms_per_request'))} | "
                f"{_f(row['requests_per_batch'], '.2f')} | {_f(row['texts_per_batch'])} | "
                f"{_f(row['batch_ms'])} |"
            )
    lines += [
        "",
        "| concurrency | tuneproof / plain req/s | tuneproof / one-by-one req/s | tuneproof / plain p99 |",
    ]
    lines.append("| ---: | ---: | ---: | ---: |")
    for c, r in summary["ratios"].items():
        lines.append(
            f"| {c} | {_f(r['rps_vs_plain'], '.2f')} | {_f(r['rps_vs_one_by_one'], '.2f')} | "
            f"{_f(r['p99_vs_plain'], '.2f')} |"
        )
    t = summary["target"]
    verdict = "met" if t["met"] else "MISSED"
    lines += [
        "",
        f"Target (issue 13: at least {TARGET_THROUGHPUT_RATIO:g}x the plain server's throughput at "
        f"concurrency {t['concurrency']} with a lower p99): **{verdict}** (throughput "
        f"{_f(t['throughput_ratio'], '.2f')}x, p99 ratio {_f(t['p99_ratio'], '.2f')}).",
    ]
    agreement = meta.get("label_agreement")
    if agreement:
        shown = ", ".join(f"{arm} {share:.3f}" for arm, share in agreement.items() if arm != "tuneproof")
        lines.append(f"Top-label agreement with tuneproof on {meta['agreement_texts']} texts: {shown}.")
    return "\n".join(lines)


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def run_benchmark(plan: Plan, run_dir: Path, out_dir: Path) -> dict[str, Any]:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir.mkdir(parents=True, exist_ok=True)
    logs = out_dir / f"serve-{stamp}-logs"
    logs.mkdir()
    info = run_info(run_dir)
    texts = review_texts(plan.seed)
    payloads = make_payloads(texts, plan.texts_per_request, max(plan.requests, plan.warmup_requests))
    meta: dict[str, Any] = {
        "mode": plan.mode,
        "started": stamp,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "run": str(run_dir),
        "deployable": bool(info.get("deployable")),
        "model_precision": str(info.get("precision", "fp32")),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "loadavg_start": os.getloadavg()[0],
    }
    t0 = time.perf_counter()
    with servers(plan, run_dir, bool(info.get("deployable")), logs) as running:
        bases = {arm: s.base for arm, s in running.items()}
        check = payloads[-16:]
        meta["label_agreement"] = asyncio.run(_agreement(bases, check))
        meta["agreement_texts"] = sum(len(b["texts"]) for b in check)
        loads = asyncio.run(measure(plan, bases, payloads, {arm: s.proc.pid for arm, s in running.items()}))
    meta["loadavg_end"] = os.getloadavg()[0]
    meta["loadavg_during_max"] = max((x["loadavg_1m"] for x in loads), default=None)
    meta["seconds"] = time.perf_counter() - t0
    results = {
        "meta": meta,
        "plan": dataclasses.asdict(plan),
        "loads": loads,
        "summary": summarize(loads, plan.concurrency),
    }
    path = out_dir / f"serve-{stamp}.json"
    path.write_text(json.dumps(results, indent=1))
    meta["path"] = str(path)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="a packaged classification run folder (default: build one)")
    ap.add_argument("--protocol", type=Path, default=PROTOCOL, help="protocol to build the run from")
    ap.add_argument("--quick", action="store_true", help="tiny loads: a smoke check of the harness")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads per server")
    ap.add_argument("--repeats", type=int, help="interleaved repeats of every load (default 2; quick 1)")
    ap.add_argument("--requests", type=int, help="requests per load, at most (default 600)")
    ap.add_argument("--seconds", type=float, help="seconds per load, at most (default 20)")
    ap.add_argument("--texts-per-request", type=int, help="review snippets per request (default 4)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="results folder")
    ap.add_argument("--render", type=Path, help="print the Markdown report of a saved results JSON and exit")
    args = ap.parse_args(argv)
    if args.render:
        print(render_markdown(json.loads(args.render.read_text())))
        return 0
    plan = quick_plan(args.threads) if args.quick else full_plan(args.threads)
    for name in ("repeats", "requests", "seconds", "texts_per_request"):
        if getattr(args, name) is not None:
            setattr(plan, name, getattr(args, name))
    run_dir = args.run or packaged_run(args.protocol, REPO / "benchmarks" / ".cache", plan.threads)
    results = run_benchmark(plan, run_dir.resolve(), args.out)
    print(render_markdown(results))
    print(f"\nresults: {results['meta']['path']} ({results['meta']['seconds']:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
