"""The report's search section on a synthetic run folder: what it states and shows, and when it stays out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import tuneproof.report.search_section as search_section
from tuneproof.report import load_run, write_report
from tuneproof.report.sections import sections_for_task

XSS = "<script>alert(1)</script>"


def trial(
    number: int, state: str, value: float | None, lr: float, reason: str | None = None, **extra: Any
) -> dict:
    return {
        "number": number,
        "state": state,
        "value": value,
        "params": {"train.learning_rate": lr},
        "intermediate": {"5": (value or 0.4) - 0.05, "10": value or 0.45} if state != "fail" else {},
        "reason": reason,
        "default": number == 0,
        "retry_of": None,
        "worker": "host:1",
        "steps": 10,
        "best_step": 10,
        "started_at": None,
        "finished_at": None,
        "seconds": 12.5,
        **extra,
    }


def search_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "search").mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"status": "passed", "deployable": True}))
    (run / "metrics.json").write_text(
        json.dumps({"task": "classification", "validation": {"macro_f1": 0.81}})
    )
    trials = [
        trial(0, "complete", 0.70, 2e-5),
        trial(1, "complete", 0.81, 1.4e-4),
        trial(
            2, "pruned", 0.52, 1e-5, "pruned at step 5 by the median pruner: validation macro_f1 0.5200 ..."
        ),
        trial(3, "fail", None, 0.3, f"diverged: non-finite loss (nan) at step 3 {XSS}"),
        trial(4, "fail", None, 0.2, "out of memory: CUDA out of memory"),
    ]
    summary = {
        "metric": "macro_f1",
        "direction": "maximize",
        "split": "validation",
        "selection": "Trials were compared on the validation split only.",
        "sampler": "tpe",
        "pruner": {"type": "median"},
        "budget": {"trials": 5, "minutes": 8},
        "space": {"train.learning_rate": {"type": "float", "low": 1e-5, "high": 0.3, "log": True}},
        "study_name": "s-1",
        "storage": "postgresql://u:***@db/x",
        "seed": 3,
        "trials": {"total": 5, "complete": 2, "pruned": 1, "fail": 2, "counted_against_budget": 5},
        "search_seconds": 300.0,
        "stopped_because": "trial budget reached (5)",
        "best": {"number": 1, "value": 0.81, "params": {"train.learning_rate": 1.4e-4}},
        "default": {"number": 0, "value": 0.70, "params": {"train.learning_rate": 2e-5}},
        "default_values": {"train.learning_rate": 2e-5},
        "improvement_over_default": 0.11,
        "importances": {"train.learning_rate": 1.0},
        "importances_note": None,
        "chosen_protocol": "search/chosen-protocol.yaml",
    }
    (run / "search" / "summary.json").write_text(json.dumps(summary))
    (run / "search" / "trials.json").write_text(json.dumps(trials))
    (run / "search" / "chosen-protocol.yaml").write_text("# chosen\ntrain:\n  learning_rate: 0.00014\n")
    return run


def test_every_page_places_the_search_section_after_training() -> None:
    for task in ("classification", "sft"):
        page = sections_for_task(task)
        ids = [s.id for s in page]
        assert ids.index("search") == ids.index("training") + 1
        assert search_section.SECTION in page


def test_the_search_section_states_shows_and_escapes(tmp_path: Path) -> None:
    html = search_section.render(load_run(search_run(tmp_path)))
    assert html is not None
    assert (
        "selected on validation only" in html and "Trials were compared on the validation split only." in html
    )
    assert "Chosen: trial 1, validation macro_f1 0.8100" in html
    assert "the protocol&#39;s own settings (trial 0) reached 0.7000, a difference of 0.1100" in html
    assert "the search result reproduces" in html  # the final validation score equals the trial's
    assert "<svg" in html  # the optimisation history
    assert "importance (fANOVA)" in html and "learning_rate" in html
    for text in ("pruned at step 5 by the median pruner", "diverged: non-finite loss", "out of memory"):
        assert text in html
    assert html.count('class="chip fail"') == 2 and html.count('class="chip warn"') == 1
    assert "0 (default)" in html and "chosen-protocol.yaml" in html
    assert XSS not in html and "&lt;script&gt;" in html


def test_a_run_without_search_has_no_search_section(tmp_path: Path) -> None:
    run = tmp_path / "plain"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"status": "passed"}))
    assert search_section.render(load_run(run)) is None
    assert 'id="search"' not in write_report(run).read_text()


def test_the_full_page_includes_the_section(tmp_path: Path) -> None:
    page = write_report(search_run(tmp_path)).read_text()
    assert '<section id="search"><h2>Hyper-parameter search</h2>' in page
    assert '<a href="#search">Hyper-parameter search</a>' in page
