"""`tuneproof serve` as a user starts it: drift gauges on /metrics from the run's reference, and a
capture folder that `tuneproof monitor` reads back exactly as the server wrote it."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serve_helpers import free_port
from typer.testing import CliRunner

from helpers import POSITIVE, toy_reviews

pytestmark = pytest.mark.integration


def _gauges(base: str) -> dict[str, float]:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return {
        s.name: s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name.startswith("tuneproof_drift_")
    }


def _wait_for(base: str, total: int, limit_s: float = 60.0) -> dict[str, float]:
    """Observers run off the response path: poll (bounded) until they have seen ``total`` texts."""
    t0 = time.monotonic()
    while True:
        g = _gauges(base)
        if g.get("tuneproof_drift_observed_total") == total:
            return g
        assert time.monotonic() - t0 < limit_s, f"observers saw {g.get('tuneproof_drift_observed_total')}"
        time.sleep(0.1)


def test_serve_exports_drift_gauges_and_its_capture_is_monitored(
    monitor_run_dir: Path, tmp_path: Path
) -> None:
    port, cap = free_port(), tmp_path / "captured"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tuneproof",
            "serve",
            str(monitor_run_dir),
            "--port",
            str(port),
            "--capture",
            str(cap),
            "--drift-window",
            "100",
        ],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    answered: dict[str, str] = {}
    try:
        t0 = time.monotonic()
        while True:
            assert proc.poll() is None and time.monotonic() - t0 < 120, "server did not start"
            try:
                if httpx.get(f"{base}/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        g = _gauges(base)
        assert g["tuneproof_drift_window_size"] == 0 and math.isnan(g["tuneproof_drift_length_ks_pvalue"])

        same = [r["text"] for r in toy_reviews(120, seed=41)]
        for start in range(0, 120, 40):  # three requests; the gauges keep the newest 100 texts
            batch = same[start : start + 40]
            res = httpx.post(f"{base}/predict", json={"texts": batch}, timeout=60)
            assert res.status_code == 200, res.text
            answered.update(zip(batch, (p["label"] for p in res.json()["predictions"]), strict=True))
        g = _wait_for(base, 120)
        assert g["tuneproof_drift_window_size"] == 100
        assert g["tuneproof_drift_length_ks_pvalue"] > 0.01 and g["tuneproof_drift_label_chi2_pvalue"] > 0.01
        assert g["tuneproof_drift_label_psi"] < 0.1

        rng = random.Random(4)
        shifted = [" ".join(rng.choice(POSITIVE) for _ in range(rng.randint(15, 20))) for _ in range(100)]
        res = httpx.post(f"{base}/predict", json={"texts": shifted[:50]}, timeout=60)
        assert res.status_code == 200
        res = httpx.post(f"{base}/predict", json={"texts": shifted[50:]}, timeout=60)
        assert res.status_code == 200
        g = _wait_for(base, 220)
        assert g["tuneproof_drift_length_ks_pvalue"] < 1e-6 and g["tuneproof_drift_label_psi"] > 0.5
    finally:
        proc.send_signal(signal.SIGTERM)  # graceful: the capture writer flushes before the process ends
        try:
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    # What the real writer left is what the monitor reads: 220 records, their predictions as served.
    files = sorted(cap.glob("capture-*.jsonl"))
    assert files
    records = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(records) == 220 and {r["route"] for r in records} == {"/predict"}
    from tuneproof.cli import app

    r = CliRunner().invoke(app, ["monitor", str(monitor_run_dir), "--window", str(cap)])
    assert r.exit_code == 13, r.stdout + r.stderr  # its newest 150 rows hold the 100 shifted ones
    out_dir = Path(next(x for x in r.stdout.splitlines() if x.startswith("report: ")).split(" ", 1)[1])
    report = json.loads((out_dir / "monitoring.json").read_text())
    assert report["window"]["rows_read"] == 220 and report["window"]["rows_used"] == 150
    assert report["window"]["predictions"] == "as captured"
    assert "length" in report["drift"]["alarming_tests"]
    # The first 120 captured texts (the unshifted ones, written by time) carry the labels served.
    first = sorted(records, key=lambda x: x["time"])[:120]
    kept = [x for x in first if x["text"] in answered]  # the PII policy may rewrite some texts
    assert len(kept) >= 100 and all(x["prediction"]["label"] == answered[x["text"]] for x in kept)


def test_a_run_without_a_reference_is_served_without_drift_observers(
    monitor_run_dir: Path, tmp_path: Path
) -> None:
    from tuneproof.monitor.live import LiveDrift, live_drift_observers

    assert live_drift_observers(tmp_path) == []  # e.g. an sft run: nothing stored to compare with
    (obs,) = live_drift_observers(monitor_run_dir)
    assert isinstance(obs, LiveDrift) and obs.window == 150  # the protocol's monitor.window
    assert live_drift_observers(monitor_run_dir, 7)[0].window == 7
