"""Monitoring end to end on a tiny packaged run: the reference, drift verdicts and their exit codes,
labelled feedback against the release evaluation, bad windows, and the live gauges."""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from helpers import NEUTRAL, POSITIVE, toy_reviews, write_jsonl

pytestmark = pytest.mark.integration


@pytest.fixture
def run_dir(monitor_run_dir: Path) -> Path:
    return monitor_run_dir


@dataclass
class Res:
    returncode: int
    stdout: str
    stderr: str


def cli(*args: str) -> Res:
    """The CLI in this process (typer's runner): the exit code and output it gives, without paying a
    fresh interpreter and torch import per call."""
    from typer.testing import CliRunner

    from tuneproof.cli import app

    r = CliRunner().invoke(app, list(args))
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return Res(r.exit_code, r.stdout, r.stderr)


def monitor(*args: str) -> Res:
    return cli("monitor", *args)


def _window(tmp: Path, name: str, rows: list[dict[str, str]]) -> Path:
    return write_jsonl(tmp / name, rows)


def _report(res: Res) -> dict:
    out_dir = Path(next(x for x in res.stdout.splitlines() if x.startswith("report: ")).split(" ", 1)[1])
    return json.loads((out_dir / "monitoring.json").read_text())


def test_reference_is_written_hashed_and_read_back(run_dir: Path) -> None:
    from tuneproof.monitor.reference import load_reference

    manifest = json.loads((run_dir / "manifest.json").read_text())
    for rel in ("reference/reference.parquet", "reference/tensors.safetensors", "reference/reference.json"):
        assert manifest["files"][rel], rel
    assert not list((run_dir / "reference").glob("*.pkl")) and not list((run_dir / "reference").glob("*.pt"))
    ref = load_reference(run_dir)
    test = pd.read_parquet(run_dir / "data" / "test.parquet")
    preds = pd.read_parquet(run_dir / "predictions" / "test.parquet")
    assert ref.observed.texts == test["text"].tolist()
    assert ref.observed.labels == test["label"].tolist()
    assert ref.observed.category == preds["pred"].tolist()  # the released model's own test predictions
    assert ref.observed.probabilities is not None and ref.observed.embeddings is not None
    assert ref.observed.embeddings.shape == (len(test), 32)
    # Through format_prediction, as the server answers: rounded to 6 decimals.
    assert ref.observed.probabilities[:, 1] == pytest.approx(preds["prob_pos"].to_numpy(), abs=1e-6)
    top = preds[["prob_neg", "prob_pos"]].max(axis=1).to_numpy()
    assert ref.observed.confidence == pytest.approx(top, abs=1e-6)


def test_a_window_from_the_same_distribution_stays_quiet(run_dir: Path, tmp_path: Path) -> None:
    win = _window(tmp_path, "same.jsonl", [{"text": r["text"]} for r in toy_reviews(150, seed=5)])
    res = monitor(str(run_dir), "--window", str(win))
    assert res.returncode == 0, res.stdout + res.stderr
    report = _report(res)
    assert report["verdict"] == "ok" and report["exit_code"] == 0
    tests = {t["name"]: t for t in report["drift"]["tests"]}
    assert set(tests) == {"length", "unknown_tokens", "embedding", "predicted_labels", "confidence"}
    assert all(
        t["p_value"] is not None and t["p_value"] > report["drift"]["level_per_test"] for t in tests.values()
    )
    assert (
        0.3 < tests["embedding"]["detail"]["auc"] < tests["embedding"]["detail"]["alarm_auc_threshold"] + 0.05
    )
    # The report is beside the run, listed in the index, and outside the manifest's hashes.
    assert (run_dir / "monitoring" / "index.html").read_text().count("monitoring") >= 1
    assert cli("verify", str(run_dir)).returncode == 0


def test_a_shifted_text_distribution_alarms_with_exit_13(run_dir: Path, tmp_path: Path) -> None:
    rng = random.Random(3)
    # Long texts of neutral words only: another "domain" than the short opinionated reviews.
    rows = [{"text": " ".join(rng.choice(NEUTRAL) for _ in range(rng.randint(18, 26)))} for _ in range(150)]
    res = monitor(str(run_dir), "--window", str(_window(tmp_path, "shift.jsonl", rows)))
    assert res.returncode == 13, res.stdout + res.stderr
    report = _report(res)
    assert report["verdict"] == "drift"
    assert {"length", "embedding"} <= set(report["drift"]["alarming_tests"])
    tests = {t["name"]: t for t in report["drift"]["tests"]}
    assert tests["embedding"]["detail"]["auc"] > tests["embedding"]["detail"]["alarm_auc_threshold"]
    assert "drift detected" in res.stderr


def test_a_label_prior_shift_alarms_on_predicted_labels(run_dir: Path, tmp_path: Path) -> None:
    rows = [r for r in toy_reviews(600, seed=9, noise=0.0) if r["label"] == "pos"][:135]
    rows += [r for r in toy_reviews(600, seed=9, noise=0.0) if r["label"] == "neg"][:15]
    random.Random(0).shuffle(rows)
    win = _window(tmp_path, "prior.csv", [])
    pd.DataFrame({"text": [r["text"] for r in rows]}).to_csv(win, index=False)
    res = monitor(str(run_dir), "--window", str(win))
    assert res.returncode == 13, res.stdout + res.stderr
    report = _report(res)
    assert "predicted_labels" in report["drift"]["alarming_tests"]
    labels = next(t for t in report["drift"]["tests"] if t["name"] == "predicted_labels")
    shares = dict(zip(labels["detail"]["categories"], labels["detail"]["window_share"], strict=True))
    assert shares["pos"] > 0.7 and labels["detail"]["psi"] > 0.1


def test_labelled_feedback_is_compared_with_the_release_on_intervals(run_dir: Path, tmp_path: Path) -> None:
    fresh = toy_reviews(150, seed=11, noise=0.1)
    texts = [{"id": f"r{i}", "text": r["text"]} for i, r in enumerate(fresh)]
    win = _window(tmp_path, "feedback.jsonl", texts)
    good = _window(
        tmp_path, "good.jsonl", [{"id": f"r{i}", "label": r["label"]} for i, r in enumerate(fresh)]
    )
    res = monitor(str(run_dir), "--window", str(win), "--labels", str(good))
    assert res.returncode == 0, res.stdout + res.stderr
    perf = _report(res)["performance"]
    release = json.loads((run_dir / "metrics.json").read_text())["model"]["accuracy"]
    acc = perf["metrics"]["accuracy"]
    assert acc["release"]["value"] == pytest.approx(release["value"])  # re-estimated from the reference
    assert acc["difference"]["low"] <= 0 <= acc["difference"]["high"] and acc["verdict"] != "worse"
    assert perf["gates_on_window"]["passed"] is True

    # The world changed under the model: a third of the labels now say the opposite.
    flipped = [
        {"id": f"r{i}", "label": ("neg" if r["label"] == "pos" else "pos") if i % 3 == 0 else r["label"]}
        for i, r in enumerate(fresh)
    ]
    bad = _window(tmp_path, "bad_labels.jsonl", flipped)
    res = monitor(str(run_dir), "--window", str(win), "--labels", str(bad))
    assert res.returncode == 14, res.stdout + res.stderr
    perf = _report(res)["performance"]
    assert "accuracy" in perf["degraded"] and perf["metrics"]["accuracy"]["difference"]["high"] < 0
    assert perf["gates_on_window"]["passed"] is False
    assert "worse than at release" in res.stderr


def test_a_capture_folder_is_read_with_its_predictions(run_dir: Path, tmp_path: Path) -> None:
    from tuneproof.serve.predict import Predictor

    cap = tmp_path / "capture"
    cap.mkdir()
    texts = [r["text"] for r in toy_reviews(160, seed=21)]
    preds = Predictor.load(run_dir).predict(texts)
    for part in range(2):
        rows = [
            {
                "time": f"2026-12-01T10:{i // 60:02d}:{i % 60:02d}Z",
                "route": "/predict",
                "text": t,
                "prediction": p,
            }
            for i, (t, p) in enumerate(zip(texts, preds, strict=True))
            if i % 2 == part
        ]
        write_jsonl(cap / f"capture-{part}.jsonl", rows)
    # A writer killed mid-line leaves a last line without its newline; capture.py says readers skip it.
    with (cap / "capture-1.jsonl").open("a") as f:
        f.write('{"time": "2026-12-01T11:00:00Z", "route": "/predict", "text": "cut o')
    res = monitor(str(run_dir), "--window", str(cap))
    assert res.returncode == 0, res.stdout + res.stderr
    w = _report(res)["window"]
    # The most recent 150 of 160 by time, across both files; the captured predictions are used as is.
    assert w["rows_read"] == 160 and w["rows_used"] == 150 and w["predictions"] == "as captured"
    assert w["last_row"].endswith("capture-1.jsonl:80")


def test_a_bad_window_names_file_and_line_and_writes_nothing(run_dir: Path, tmp_path: Path) -> None:
    lines = [json.dumps({"text": r["text"]}) for r in toy_reviews(40, seed=2)]
    lines[4] = "{not json"
    lines[9] = json.dumps({"body": "no text here"})
    lines[12] = json.dumps({"text": "fine film", "label": "meh"})
    win = tmp_path / "bad.jsonl"
    win.write_text("\n".join(lines) + "\n")
    before = sorted((run_dir / "monitoring").glob("*")) if (run_dir / "monitoring").exists() else []
    res = monitor(str(run_dir), "--window", str(win))
    assert res.returncode == 3, res.stdout + res.stderr
    assert f"{win}:5" in res.stderr and "malformed JSON" in res.stderr
    # Lines 10 and 13 are found in the same pass only once the file parses; fix line 5 and look again.
    lines[4] = json.dumps({"text": "a fine film"})
    win.write_text("\n".join(lines) + "\n")
    res = monitor(str(run_dir), "--window", str(win))
    assert res.returncode == 3
    assert f"{win}:10" in res.stderr and "'text'" in res.stderr
    assert f"{win}:13" in res.stderr and "'meh'" in res.stderr
    after = sorted((run_dir / "monitoring").glob("*")) if (run_dir / "monitoring").exists() else []
    assert after == before
    missing = monitor(str(run_dir), "--window", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 3 and "nope.jsonl" in missing.stderr


def test_live_drift_gauges(run_dir: Path) -> None:
    from tuneproof.monitor.live import LiveDrift
    from tuneproof.serve.predict import Predictor

    predictor = Predictor.load(run_dir)
    live = LiveDrift(run_dir, window=100)
    g = live.gauges()
    assert g["window_size"] == 0 and math.isnan(g["length_ks_pvalue"]) and math.isnan(g["label_psi"])
    same = [r["text"] for r in toy_reviews(120, seed=31)]
    for start in range(0, 120, 40):  # three requests; the rolling window keeps the newest 100 texts
        batch = same[start : start + 40]
        live.observe(batch, predictor.predict(batch))
    g = live.gauges()
    assert g["window_size"] == 100 and g["observed_total"] == 120
    assert g["length_ks_pvalue"] > 0.01 and g["label_chi2_pvalue"] > 0.01 and g["label_psi"] < 0.1
    assert 0.5 <= g["confidence_mean"] <= 1.0
    rng = random.Random(4)
    shifted = [" ".join(rng.choice(POSITIVE) for _ in range(rng.randint(15, 20))) for _ in range(100)]
    live.observe(shifted, predictor.predict(shifted))
    g = live.gauges()
    assert g["window_size"] == 100
    assert g["length_ks_pvalue"] < 1e-6 and g["label_chi2_pvalue"] < 1e-6 and g["label_psi"] > 0.5
    with pytest.raises(ValueError, match="2 texts but 1 predictions"):
        live.observe(["a", "b"], [{"label": "pos", "probabilities": {"neg": 0.1, "pos": 0.9}}])
