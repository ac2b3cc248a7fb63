"""`tuneproof serve` on each backend of one run, over HTTP: the same requests, the labels compared.

    python scripts/serve_backends_check.py runs/<run>                       # the run's test texts
    python scripts/serve_backends_check.py runs/<run> --texts 512 --backends torch onnx onnx-int8

For each backend it starts the real CLI (`python -m tuneproof serve RUN --backend B`) on 127.0.0.1,
waits for /ready, POSTs the run's test texts in requests of ``--per-request`` texts, stops the
server, and then compares every backend's labels with the torch backend's, row by row.

Two checks decide the exit status (0 when both hold for every export backend):

* **serve = predict**: the labels served over HTTP are the labels the same backend gives offline
  (``Predictor.predict``, what ``tuneproof predict --backend B`` runs) on the same texts: the server
  adds nothing and loses nothing (request format, batching, calibration).
* **agreement with torch**: the share of texts whose served label equals the torch server's is at
  least the export's own ``identical_predictions`` gate (when it has one), else 1.0. An int8 export
  is allowed to differ on the rows its re-verification already counted; the script lists them.

The exports must exist (`tuneproof export RUN --format onnx --format onnx-int8`).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python scripts/serve_backends_check.py` puts only scripts/ on the path
    sys.path.insert(0, str(REPO))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_labels(
    run_dir: Path, backend: str, texts: list[str], per_request: int, timeout: float
) -> list[dict[str, Any]]:
    """The predictions `tuneproof serve --backend` answers for ``texts``, in order."""
    import httpx

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "tuneproof", "serve", str(run_dir), "--backend", backend]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--max-texts", str(per_request)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"serve --backend {backend} exited {proc.returncode}: {proc.stderr.read()}")
            try:
                if httpx.get(f"{base}/ready", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() - t0 > timeout:
                raise SystemExit(f"serve --backend {backend} was not ready within {timeout:.0f} s")
            time.sleep(0.2)
        health = httpx.get(f"{base}/health", timeout=5).json()
        print(f"{backend}: ready in {time.monotonic() - t0:.1f} s, deployable={health.get('deployable')}")
        out: list[dict[str, Any]] = []
        with httpx.Client(timeout=120) as client:
            for i in range(0, len(texts), per_request):
                r = client.post(f"{base}/predict", json={"texts": texts[i : i + per_request]})
                if r.status_code != 200:
                    raise SystemExit(f"serve --backend {backend}: HTTP {r.status_code}: {r.text[:500]}")
                out.extend(r.json()["predictions"])
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def offline_labels(run_dir: Path, backend: str, texts: list[str], per_request: int) -> list[str]:
    from tuneproof.serve.predict import Predictor

    p = Predictor.load(run_dir, backend=backend)
    labels: list[str] = []
    for i in range(0, len(texts), per_request):
        labels.extend(str(row["label"]) for row in p.predict(texts[i : i + per_request]))
    return labels


def identical_gate(run_dir: Path, backend: str) -> float:
    """The export's ``identical_predictions`` gate minimum, 1.0 when it has none."""
    v = json.loads((run_dir / "exports" / backend / "verification.json").read_text())
    mins = [
        float(g["threshold"])
        for g in v["gates"]["verdicts"]
        if g["metric"] == "identical_predictions" and g.get("threshold") is not None
    ]
    return max(mins) if mins else 1.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx", "onnx-int8"])
    ap.add_argument("--texts", type=int, default=None, help="first N test texts (default: all)")
    ap.add_argument("--per-request", type=int, default=32)
    ap.add_argument("--ready-timeout", type=float, default=180.0)
    ap.add_argument("--out", type=Path, default=None, help="write the comparison as JSON here")
    args = ap.parse_args(argv)

    import pandas as pd

    run_dir: Path = args.run_dir.resolve()
    texts = pd.read_parquet(run_dir / "data" / "test.parquet")["text"].tolist()[: args.texts]
    if "torch" not in args.backends:
        args.backends.insert(0, "torch")
    served = {b: serve_labels(run_dir, b, texts, args.per_request, args.ready_timeout) for b in args.backends}
    reference = [str(p["label"]) for p in served["torch"]]
    ok = True
    report: dict[str, Any] = {"run": str(run_dir), "texts": len(texts), "backends": {}}
    for b in args.backends:
        labels = [str(p["label"]) for p in served[b]]
        offline = offline_labels(run_dir, b, texts, args.per_request)
        same_as_offline = labels == offline
        differ = [i for i, (x, y) in enumerate(zip(labels, reference, strict=True)) if x != y]
        agreement = 1 - len(differ) / len(texts)
        need = 1.0 if b == "torch" else identical_gate(run_dir, b)
        passed = same_as_offline and agreement >= need
        ok &= passed
        report["backends"][b] = {
            "served_equals_offline_predict": same_as_offline,
            "labels_identical_to_torch": agreement,
            "required": need,
            "differing_rows": differ,
            "passed": passed,
        }
        print(
            f"{b:10s} served = offline predict: {same_as_offline}; same label as torch on "
            f"{len(texts) - len(differ)}/{len(texts)} ({agreement:.4f}, need {need:.4f})"
            + (f"; differing rows {differ[:20]}" if differ else "")
            + ("" if passed else "  FAILED")
        )
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    print("all backends answer with the same labels" if ok else "a backend disagrees (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
