"""A complete small protocol through the CLI: artifacts, exit codes, verify, predict, show."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from helpers import toy_reviews, write_jsonl, write_protocol
from tuneproof.evidence import SCHEMA_VERSION
from tuneproof.fsutil import sha256_file

pytestmark = pytest.mark.integration


def tp(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "tuneproof", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def passed_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    d = tmp_path_factory.mktemp("run")
    data = write_jsonl(d / "reviews.jsonl", toy_reviews(300))
    # The model named relative to the protocol's folder, as a protocol shared with others would.
    shutil.copytree(tiny_bert, d / "tiny-bert")
    proto = write_protocol(d / "protocol.yaml", Path("tiny-bert"), data)
    res = tp("run", str(proto), cwd=d)
    assert res.returncode == 0, res.stderr[-3000:]
    run_dir = Path(res.stdout.strip().splitlines()[-1])
    assert run_dir.is_dir()
    return run_dir


def test_run_folder_holds_the_evidence(passed_run: Path) -> None:
    for rel in [
        "protocol.yaml",
        "protocol.source.yaml",
        "data/train.parquet",
        "data/validation.parquet",
        "data/test.parquet",
        "data_report.json",
        "metrics.json",
        "gates.json",
        "report.html",
        "model_card.md",
        "manifest.json",
        "model/model.safetensors",
        "model/tuneproof_model.json",
        "training/log_history.json",
        "predictions/test.parquet",
    ]:
        assert (passed_run / rel).is_file(), rel
    assert list((passed_run / "training" / "tensorboard").glob("events.out.tfevents.*"))
    assert not list((passed_run / "model").glob("*.bin"))
    manifest = json.loads((passed_run / "manifest.json").read_text())
    assert manifest["status"] == "passed" and manifest["deployable"] is True
    assert manifest["files"]["model/model.safetensors"]
    env = manifest["environment"]
    assert env["torch"] and env["transformers"] and env["threads"] == 1 and env["precision"] == "fp32"
    assert manifest["inputs"] and manifest["protocol_sha256"]
    for name in ("manifest.json", "metrics.json", "gates.json", "model/tuneproof_model.json"):
        assert json.loads((passed_run / name).read_text())["schema_version"] == SCHEMA_VERSION, name
    # The base model as the protocol names it, not where it lay on this machine, with its hashes.
    base = manifest["base_model"]
    protocol_dir = Path(manifest["protocol_dir"])
    assert base["source"] == "tiny-bert" and str(protocol_dir) not in json.dumps(base)
    weights = protocol_dir / "tiny-bert" / "model.safetensors"
    assert base["files"]["model.safetensors"] == sha256_file(weights) and len(base["sha256"]) == 64
    assert manifest["lineage"]["base_model"] == base
    info = json.loads((passed_run / "model" / "tuneproof_model.json").read_text())
    assert info["base_model"] == base and info["deployable"] is True
    assert base["sha256"] in (passed_run / "model_card.md").read_text()
    metrics = json.loads((passed_run / "metrics.json").read_text())
    acc = metrics["model"]["accuracy"]
    assert acc["low"] <= acc["value"] <= acc["high"]
    assert set(metrics["baselines"]) == {"majority", "tfidf_logreg"}
    assert "tfidf_logreg" in metrics["comparisons"]
    assert 0 < metrics["padding_efficiency"] <= 1
    html = (passed_run / "report.html").read_text()
    assert "accuracy" in html and "tfidf_logreg" in html and "PASS" in html.upper()


def test_test_predictions_line_up_with_rows(passed_run: Path) -> None:
    preds = pd.read_parquet(passed_run / "predictions" / "test.parquet")
    test = pd.read_parquet(passed_run / "data" / "test.parquet")
    assert preds["row_id"].tolist() == test["row_id"].tolist()
    assert preds["label"].tolist() == test["label"].tolist()
    metrics = json.loads((passed_run / "metrics.json").read_text())
    assert (preds["label"] == preds["pred"]).mean() == pytest.approx(metrics["model"]["accuracy"]["value"])


def test_verify_catches_a_changed_file(passed_run: Path, tmp_path: Path) -> None:
    ok = tp("verify", str(passed_run), cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    copy = tmp_path / "copy"
    shutil.copytree(passed_run, copy)
    metrics = json.loads((copy / "metrics.json").read_text())
    metrics["model"]["accuracy"]["value"] = 0.99
    (copy / "metrics.json").write_text(json.dumps(metrics))
    (copy / "data" / "test.parquet").unlink()
    bad = tp("verify", str(copy), cwd=tmp_path)
    assert bad.returncode == 9
    assert "changed: metrics.json" in bad.stdout and "missing: data/test.parquet" in bad.stdout


def test_predict_writes_one_json_line_per_input_in_order(passed_run: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "texts.jsonl"
    texts = ["great superb lovely film", "awful dull boring mess", "the plot"]
    write_jsonl(inputs, [{"text": t} for t in texts])
    res = tp("predict", str(passed_run), "--input", str(inputs), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(lines) == 3
    assert [x["label"] for x in lines[:2]] == ["pos", "neg"]
    assert all(abs(sum(x["probabilities"].values()) - 1) < 1e-4 for x in lines)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{oops\n{"body": 1}\n')
    res = tp("predict", str(passed_run), "--input", str(bad), cwd=tmp_path)
    assert res.returncode == 3 and f"{bad}:2" in res.stderr and f"{bad}:3" in res.stderr


def test_show_summarises_the_run(passed_run: Path, tmp_path: Path) -> None:
    res = tp("show", str(passed_run), cwd=tmp_path)
    assert res.returncode == 0
    assert "accuracy" in res.stdout and "PASS" in res.stdout


def test_failed_gate_exits_4_and_keeps_a_non_deployable_model(tmp_path: Path, tiny_bert: Path) -> None:
    # 400 rows: a test split of 40 can decide both gates (accuracy >= 0.85 needs at least 23 rows).
    data = write_jsonl(tmp_path / "reviews.jsonl", toy_reviews(400))
    gates = "  - {metric: accuracy, min: 0.85}\n  - {metric: macro_f1, beats: tfidf_logreg, by: 0.5}"
    proto = write_protocol(tmp_path / "p.yaml", tiny_bert, data, gates=gates, epochs="1")
    res = tp("run", str(proto), cwd=tmp_path)
    assert res.returncode == 4, res.stderr[-2000:]
    assert "gates failed" in res.stderr
    run_dir = next((tmp_path / "runs").iterdir())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "rejected" and manifest["deployable"] is False
    assert (run_dir / "model" / "model.safetensors").is_file()
    verdicts = json.loads((run_dir / "gates.json").read_text())["verdicts"]
    assert [v["passed"] for v in verdicts] == [False, False]
    assert "interval" in verdicts[0]["decided_on"]


def test_validate_reports_everything_and_runs_nothing(tmp_path: Path, tiny_bert: Path) -> None:
    data = write_jsonl(tmp_path / "reviews.jsonl", [*toy_reviews(20), {"text": "x", "label": "maybe"}])
    good = write_protocol(
        tmp_path / "good.yaml", tiny_bert, write_jsonl(tmp_path / "ok.jsonl", toy_reviews(400))
    )
    assert tp("validate", str(good), cwd=tmp_path).returncode == 0
    bad = write_protocol(tmp_path / "bad.yaml", tiny_bert, data, gates="  - {metric: acurracy, min: 0.5}")
    text = bad.read_text().replace("  batch_size: 16", "  batch_size: 0\n  colour: red")
    bad.write_text(text)
    res = tp("validate", str(bad), cwd=tmp_path)
    assert res.returncode == 2
    assert "train.batch_size" in res.stderr and "train.colour: unknown key" in res.stderr
    bad.write_text(text.replace("  batch_size: 0\n  colour: red", "  batch_size: 8"))
    res = tp("validate", str(bad), cwd=tmp_path)
    assert res.returncode == 2
    assert "gates[0].metric" in res.stderr and f"{data}:21: unknown label 'maybe'" in res.stderr
    assert not (tmp_path / "runs").exists()


def test_bad_data_stops_before_a_run_folder_is_made(tmp_path: Path, tiny_bert: Path) -> None:
    data = write_jsonl(tmp_path / "reviews.jsonl", [*toy_reviews(20), {"text": 3, "label": "pos"}])
    proto = write_protocol(tmp_path / "p.yaml", tiny_bert, data)
    res = tp("run", str(proto), cwd=tmp_path)
    assert res.returncode == 3 and f"{data}:21: text must be a string" in res.stderr
    assert not (tmp_path / "runs").exists()
