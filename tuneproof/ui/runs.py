"""The runs of a project, and the comparison of two runs on the same test rows.

Reads only the evidence files a run wrote (through tuneproof/evidence.py where it can); the paired
difference reuses tuneproof/evaluate/bootstrap.py, the same resampling the run's own baselines are
judged with, so "is B better than A" is answered on identical test rows.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneproof.errors import RunFolderError
from tuneproof.ui.paths import relative, walk

KEY_METRICS = ("accuracy", "macro_f1", "f1", "micro_f1", "rmse", "spearman", "perplexity", "rouge_l")


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
    task = ma.get("task")
    if mb.get("task") != task:
        out["reason"] = f"the runs are of different tasks ({task} and {mb.get('task')})"
        return out
    import pandas as pd

    from tuneproof.evaluate.direction import lower_is_better
    from tuneproof.ui.paired import join_predictions, stat_groups

    files = [d / "predictions" / "test.parquet" for d in (run_a, run_b)]
    if not all(f.is_file() for f in files):
        out["reason"] = "a run has no predictions/test.parquet to pair"
        return out
    joined, why = join_predictions(str(task), pd.read_parquet(files[0]), pd.read_parquet(files[1]))
    if joined is None:
        out["same_test_rows"] = False
        out["reason"] = why
        return out
    evidence_b = _json(run_b / "metrics.json") or {}
    confidence = float(evidence_b.get("confidence", 0.95))
    samples = int(evidence_b.get("bootstrap_samples", samples))
    for i, group in enumerate(stat_groups(str(task), joined)):
        idx = row_resamples(group.n, samples, seed + i)
        for metric, stat_b in group.b.items():
            d = paired_difference(stat_b, group.a[metric], idx, confidence)
            low, high = d["low"], d["high"]
            sign = -1.0 if lower_is_better(metric) else 1.0
            better_b = low is not None and high is not None and min(sign * low, sign * high) > 0
            better_a = low is not None and high is not None and max(sign * low, sign * high) < 0
            verdict = "B is better" if better_b else "A is better" if better_a else "no clear difference"
            out["paired"][metric] = {
                **d,
                "n": group.n,
                "lower_is_better": sign < 0,
                "verdict": verdict,
            }
    out.update(n=len(joined), confidence=confidence, samples=samples, task=task)
    if not out["paired"]:
        out["reason"] = "the runs share no metric that can be paired (different tokenizers?)"
    clustered = _cluster_by(run_a) or _cluster_by(run_b)
    if clustered:
        # The predictions files do not carry the cluster column, so these intervals resample rows;
        # the runs' own intervals (in their metrics) resample clusters and are wider.
        out["note"] = (
            f"the runs resample clusters of {clustered!r}; this paired interval resamples rows "
            "and is narrower than a clustered one"
        )
    return out


def _cluster_by(run_dir: Path) -> str | None:
    import yaml

    try:
        raw = yaml.safe_load((run_dir / "protocol.yaml").read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    value = ((raw or {}).get("evaluate") or {}).get("cluster_by") if isinstance(raw, dict) else None
    return str(value) if value else None
