"""Exports end to end on tiny models: a run that exports as its last stage, the evidence in every file,
`verify` over the exported files, the ONNX backend of `predict`, and the classic export bugs (a lost
sigmoid, a lost label order) failing their export gates."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from task_fixtures import protocol_text, toy_multilabel, write_rows
from typer.testing import CliRunner

from helpers import toy_reviews, write_jsonl, write_protocol
from tuneproof.cli import app
from tuneproof.evidence import Manifest
from tuneproof.export.heads import ExportHead
from tuneproof.export.info import ExportInfo, ExportVerification
from tuneproof.export.manifest import read_manifest, verify
from tuneproof.export.onnx import OnnxRunner
from tuneproof.export.reverify import align_labels, reverify
from tuneproof.export.stage import Original, make_exports, seal
from tuneproof.protocol import load_protocol
from tuneproof.runner import run
from tuneproof.serve.predict import Predictor

pytestmark = pytest.mark.integration

EXPORT = """export:
  formats: [onnx, onnx-int8]
  gates:
    - {metric: accuracy, beats: original, by: -0.05}
    - {metric: identical_predictions, min: 0.85}
    - {metric: max_probability_difference, max: 0.05}
"""
TEXTS = ["a great and warm film", "dull boring plot", "the cast was fine but the ending was flat", "superb"]


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    d = tmp_path_factory.mktemp("export-cls")
    data = write_jsonl(d / "reviews.jsonl", toy_reviews(400))
    proto = write_protocol(d / "p.yaml", tiny_bert, data)
    # Calibrated: `predict` and `serve` return probabilities with the fitted temperature, and an ONNX
    # graph ending in the head's softmax does not carry it; every backend must still agree.
    proto.write_text(proto.read_text() + EXPORT + "calibration: temperature\n")
    outcome = run(proto, output_dir=d / "runs")
    assert outcome.status == "passed"
    return outcome.run_dir


@pytest.fixture(scope="module")
def ml_run(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    d = tmp_path_factory.mktemp("export-ml")
    write_rows(d / "ml.jsonl", toy_multilabel(300, seed=3))
    data = "  files: [ml.jsonl]\n  label_column: labels"
    (d / "p.yaml").write_text(protocol_text("multilabel", tiny_bert, data, epochs=6))
    return run(d / "p.yaml", output_dir=d / "runs").run_dir


def _verification(run_dir: Path, fmt: str) -> ExportVerification:
    return ExportVerification.read(run_dir / "exports" / fmt)


def test_a_run_exports_onnx_and_int8_as_its_last_stage_with_the_evidence(cls_run: Path) -> None:
    onnx, int8 = _verification(cls_run, "onnx"), _verification(cls_run, "onnx-int8")
    for v in (onnx, int8):
        assert v.released and v.gates.passed and v.n == 40
        diff = v.evaluation["comparisons"]["original"]["accuracy"]
        assert diff["low"] <= diff["diff"] <= diff["high"]
        assert v.evaluation["baselines"]["original"]["accuracy"]["value"] == pytest.approx(
            json.loads((cls_run / "metrics.json").read_text())["model"]["accuracy"]["value"]
        )
    # The export is judged on the probabilities it serves: calibrated like the run's own evaluation.
    metrics = json.loads((cls_run / "metrics.json").read_text())
    temperature = json.loads((cls_run / "model" / "tuneproof_model.json").read_text()).get("temperature")
    assert temperature is not None and abs(temperature - 1.0) > 1e-3
    assert onnx.evaluation["model"]["ece"]["value"] == pytest.approx(
        metrics["model"]["ece"]["value"], abs=1e-4
    )
    # fp32 graph against the fp32 run: the same model to rounding; int8 moves probabilities a little.
    assert onnx.evaluation["model"]["identical_predictions"]["value"] == 1.0
    assert onnx.evaluation["model"]["max_probability_difference"] < 1e-4
    assert 0 < int8.evaluation["model"]["max_probability_difference"] < 0.05
    assert (cls_run / "exports" / "onnx" / "model.onnx").stat().st_size > (
        cls_run / "exports" / "onnx-int8" / "model.int8.onnx"
    ).stat().st_size
    manifest = read_manifest(cls_run)
    assert manifest.exports is not None and set(manifest.exports) == {"onnx", "onnx-int8"}
    record = manifest.exports["onnx"]
    assert record.released and "model.onnx" in record.files
    assert manifest.files is not None and "exports/onnx/model.onnx" in manifest.files
    metrics = json.loads((cls_run / "metrics.json").read_text())
    assert metrics["exports"]["onnx-int8"]["released"] is True
    assert "accuracy" in metrics["exports"]["onnx-int8"]["difference_vs_original"]
    assert "Exports (re-verified)" in (cls_run / "report.html").read_text()
    card = (cls_run / "model_card.md").read_text()
    assert "## Exports" in card and "| onnx-int8 | yes |" in card
    assert verify(cls_run) == {"changed": [], "missing": [], "added": []}


def test_verify_finds_a_changed_or_missing_export_file(cls_run: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(cls_run, tmp_path / "run"))
    graph = copy / "exports" / "onnx" / "model.onnx"
    graph.write_bytes(graph.read_bytes()[:-1] + b"\x00")
    (copy / "exports" / "onnx-int8" / "tuneproof_export.json").unlink()
    diff = verify(copy)
    assert diff["changed"] == ["exports/onnx/model.onnx"]
    assert diff["missing"] == ["exports/onnx-int8/tuneproof_export.json"]


def test_the_onnx_backends_predict_what_the_torch_model_predicts(cls_run: Path) -> None:
    torch_out = Predictor.load(cls_run).predict(TEXTS)
    for backend, tol in (("onnx", 1e-4), ("onnx-int8", 0.05)):
        predictor = Predictor.load(cls_run, backend=backend)
        assert predictor.info.deployable and predictor.runner is not None
        out = predictor.predict(TEXTS)
        assert [set(o) for o in out] == [set(o) for o in torch_out]  # the same response format
        for a, b in zip(out, torch_out, strict=True):
            assert set(a["probabilities"]) == set(b["probabilities"])
            for lab, p in a["probabilities"].items():
                assert abs(p - b["probabilities"][lab]) <= tol
            if max(b["probabilities"].values()) - min(b["probabilities"].values()) > 2 * tol:
                assert a["label"] == b["label"]


def test_an_export_whose_label_order_is_lost_fails_its_export_gate(cls_run: Path) -> None:
    original = Original.load(cls_run)
    folder = cls_run / "exports" / "onnx"
    info = ExportInfo.read(folder)
    # The bug: the graph is right, but its label list is written in another order (e.g. sorted
    # differently from the training label ids), so every consumer reads the columns wrongly.
    lost = info.model_copy(update={"labels": list(reversed(info.labels))})
    runner = OnnxRunner(folder, lost)
    raw = runner.predict(original.task, original.features, original.pad_id, 32)
    spec = load_protocol(cls_run / "protocol.source.yaml").protocol.export
    assert spec is not None
    result = reverify(
        original.task, original.test, original.outputs, align_labels(original.task, raw, lost.labels), spec
    )
    assert not result.gates.passed
    assert set(result.gates.failed) >= {
        "accuracy beats original by >= -0.05",
        "identical_predictions >= 0.85",
        "max_probability_difference <= 0.05",
    }
    assert result.evaluation["model"]["identical_predictions"]["value"] < 0.5
    # The same graph read with its true label list passes.
    good = reverify(
        original.task,
        original.test,
        original.outputs,
        align_labels(
            original.task,
            OnnxRunner(folder, info).predict(original.task, original.features, 0, 32),
            info.labels,
        ),
        spec,
    )
    assert good.gates.passed


def test_a_multilabel_export_whose_sigmoid_is_lost_fails_and_is_kept_not_released(ml_run: Path) -> None:
    from tuneproof.protocol.schema import ExportSpec

    manifest = read_manifest(ml_run)
    spec = ExportSpec.model_validate(
        {
            "formats": ["onnx"],
            "gates": [
                {"metric": "micro_f1", "beats": "original", "by": -0.005},
                {"metric": "identical_predictions", "min": 0.85},
            ],
        }
    )
    lost = ExportHead("probabilities", "identity", "probabilities")  # logits come out as "probabilities"
    (outcome,) = make_exports(ml_run, spec, manifest, head=lost)
    seal(ml_run, manifest)
    assert not outcome.released and not outcome.verification.gates.passed
    failed = outcome.verification.gates.failed
    assert any("micro_f1" in g for g in failed) and any("identical" in g for g in failed)
    kept = _verification(ml_run, "onnx")
    assert not kept.released and kept.reason.startswith("not released: export gate(s) failed")
    assert (ml_run / "exports" / "onnx" / "model.onnx").is_file()  # kept for inspection
    again = Manifest.read(ml_run)
    assert again.exports is not None and not again.exports["onnx"].released
    assert "NOT released" in (ml_run / "report.html").read_text()
    # A not-released export is not deployable: serve refuses it unless --allow-rejected.
    assert not Predictor.load(ml_run, backend="onnx").info.deployable
    # The true head (sigmoid in the graph) passes the same gates and replaces the broken export.
    (fixed,) = make_exports(ml_run, spec, manifest)
    assert fixed.released, fixed.verification.gates.failed
    assert fixed.verification.evaluation["model"]["identical_predictions"]["value"] == 1.0


def test_the_export_command_exits_4_on_a_failed_export_gate_and_keeps_the_export(ml_run: Path) -> None:
    # The default gates ask for 99% identical rows at the interval's lower bound: 30 test rows cannot
    # show that (30 of 30 gives 0.884), so the export is kept, marked, and the command says so.
    res = CliRunner().invoke(app, ["export", str(ml_run), "--format", "onnx"])
    assert res.exit_code == 4, res.output
    v = _verification(ml_run, "onnx")
    assert not v.released and v.n == 30
    identical = next(g for g in v.gates.verdicts if g.metric == "identical_predictions")
    assert identical.observed == 1.0 and identical.low is not None and identical.low < 0.99
    assert verify(ml_run) == {"changed": [], "missing": [], "added": []}
    res = CliRunner().invoke(app, ["export", str(ml_run), "--format", "tflite"])
    assert res.exit_code == 15 and "--format" in res.output
