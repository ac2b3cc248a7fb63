"""The runs of a project, and the comparison of two runs on the same test rows.

Reads only the evidence files a run wrote (through tuneproof/evidence.py where it can); the paired
difference reuses tuneproof/evaluate/bootstrap.py, the same resampling the run's own baselines are
judged with, so "is B better than A" is answered on identical test rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tuneproof.errors import RunFolderError
from tuneproof.ui.paths import relative, walk

KEY_METRICS = ("accuracy", "macro_f1", "f1", "rmse", "spearman", "perplexity", "rouge_l")


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def list_runs(project: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for manifest_path in walk(project):
        if manifest_path.name != "manifest.json":
            continue
        run_dir = manifest_path.parent
        manifest = _json(manifest_path)
        if not isinstance(manifest, dict) or "status" not in manifest or "protocol" not in manifest:
            continue
        gates = _json(run_dir / "gates.json") or {}
        verdicts = gates.get("verdicts", []) if isinstance(gates, dict) else []
        metrics = _json(run_dir / "metrics.json") or {}
        model = metrics.get("model", {}) if isinstance(metrics, dict) else {}
        rows.append(
            {
                "run": relative(project, run_dir),
                "protocol": manifest.get("protocol"),
                "task": manifest.get("task"),
                "status": manifest.get("status"),
                "deployable": manifest.get("deployable"),
                "started_at": manifest.get("started_at"),
                "test_split": (manifest.get("splits") or {}).get("test"),
                "gates": {"passed": sum(1 for v in verdicts if v.get("passed")), "total": len(verdicts)},
                "metrics": {
                    k: model[k] for k in KEY_METRICS if isinstance(model.get(k), dict) and "value" in model[k]
                },
                "has_report": (run_dir / "report.html").is_file(),
                "has_model": (run_dir / "model" / "tuneproof_model.json").is_file(),
            }
        )
    rows.sort(key=lambda r: str(r["started_at"] or ""), reverse=True)
    return rows


def compare_runs(run_a: Path, run_b: Path, samples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Metrics of two runs side by side, and B minus A on the same test rows with its interval."""
    from tuneproof.evaluate.bootstrap import paired_difference, row_resamples
    from tuneproof.evaluate.metrics import accuracy_stat, macro_stat

    ma, mb = (_json(d / "manifest.json") for d in (run_a, run_b))
    if not isinstance(ma, dict) or not isinstance(mb, dict):
        raise RunFolderError("both runs need a manifest.json")
    test_a, test_b = ((m.get("splits") or {}).get("test") for m in (ma, mb))
    same = test_a is not None and test_a == test_b
    metrics_a = (_json(run_a / "metrics.json") or {}).get("model", {})
    metrics_b = (_json(run_b / "metrics.json") or {}).get("model", {})
    names = [k for k, v in metrics_a.items() if isinstance(v, dict) and "value" in v and k in metrics_b]
    side = {k: {"a": metrics_a[k], "b": metrics_b[k]} for k in names}
    out: dict[str, Any] = {"same_test_rows": same, "metrics": side, "paired": {}, "n": None}
    if not same:
        out["reason"] = "the two runs were tested on different rows (their test splits' SHA-256 differ)"
        return out
    if ma.get("task") not in ("classification",) or mb.get("task") != ma.get("task"):
        out["reason"] = (
            f"paired differences are computed for classification runs (these are {ma.get('task')})"
        )
        return out
    import pandas as pd

    pa = pd.read_parquet(run_a / "predictions" / "test.parquet")
    pb = pd.read_parquet(run_b / "predictions" / "test.parquet")
    joined = pa.merge(pb, on="row_id", suffixes=("_a", "_b"))
    if len(joined) != len(pa) or len(joined) != len(pb) or not (joined["label_a"] == joined["label_b"]).all():
        out["same_test_rows"] = False
        out["reason"] = "the prediction files do not hold the same rows with the same labels"
        return out
    labels = sorted(set(joined["label_a"]) | set(joined["pred_a"]) | set(joined["pred_b"]))
    code = {label: i for i, label in enumerate(labels)}
    y = joined["label_a"].map(code).to_numpy(np.int64)
    k = len(labels)
    confidence = float((_json(run_b / "metrics.json") or {}).get("confidence", 0.95))
    idx = row_resamples(len(joined), samples, seed)
    stats: dict[str, Any] = {}
    for side_name in ("a", "b"):
        pred = joined[f"pred_{side_name}"].map(code).to_numpy(np.int64)
        stats[side_name] = {
            "accuracy": accuracy_stat((pred == y).astype(np.float64)),
            "macro_f1": macro_stat(y * k + pred, k, "f1"),
        }
    for metric in ("accuracy", "macro_f1"):
        d = paired_difference(stats["b"][metric], stats["a"][metric], idx, confidence)
        low, high = d["low"], d["high"]
        verdict = (
            "B is better"
            if low is not None and low > 0
            else "A is better"
            if high is not None and high < 0
            else "no clear difference"
        )
        out["paired"][metric] = {**d, "verdict": verdict}
    out.update(n=len(joined), confidence=confidence, samples=samples)
    return out
