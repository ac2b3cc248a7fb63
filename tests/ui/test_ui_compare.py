"""Compare beyond classification: the paired difference of two runs on their shared test rows, for
regression, NER, multi-label and generation runs, from folders laid out as a run writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tuneproof.ui.runs import compare_runs


def _run(folder: Path, task: str, frame: pd.DataFrame, metrics: dict[str, Any] | None = None) -> Path:
    (folder / "predictions").mkdir(parents=True)
    frame.to_parquet(folder / "predictions" / "test.parquet")
    manifest = {"status": "passed", "protocol": "p", "task": task, "splits": {"test": "abc"}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    evidence = {"confidence": 0.9, "bootstrap_samples": 300, "model": metrics or {}}
    (folder / "metrics.json").write_text(json.dumps(evidence))
    return folder


def test_regression_lower_rmse_is_better_and_the_point_difference_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.normal(size=200)
    ids = [str(i) for i in range(200)]
    noisy = y + rng.normal(scale=1.0, size=200)
    close = y + rng.normal(scale=0.2, size=200)
    a = _run(tmp_path / "a", "regression", pd.DataFrame({"row_id": ids, "label": y, "pred": noisy}))
    b = _run(tmp_path / "b", "regression", pd.DataFrame({"row_id": ids, "label": y, "pred": close}))
    r = compare_runs(a, b)
    rmse = r["paired"]["rmse"]
    expected = np.sqrt(((close - y) ** 2).mean()) - np.sqrt(((noisy - y) ** 2).mean())
    assert rmse["diff"] == pytest.approx(expected, abs=1e-12)
    assert rmse["lower_is_better"] and rmse["high"] < 0 and rmse["verdict"] == "B is better"
    assert r["paired"]["spearman"]["verdict"] == "B is better"  # higher is better, diff > 0
    assert (r["confidence"], r["samples"], r["n"]) == (0.9, 300, 200)
    assert compare_runs(b, a)["paired"]["rmse"]["verdict"] == "A is better"
    assert "note" not in r
    (b / "protocol.yaml").write_text("evaluate: {cluster_by: movie}\n")
    assert "resample clusters of 'movie'" in compare_runs(a, b)["note"]  # said, not hidden


def test_ner_entities_are_scored_strictly_on_the_shared_sentences(tmp_path: Path) -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"]] * 60
    good = gold
    bad = [["B-PER", "O", "O", "B-LOC"]] * 30 + gold[:30]  # half the PER spans cut short
    ids = [str(i) for i in range(60)]
    texts = ["ann lee in rome"] * 60
    a = _run(
        tmp_path / "a",
        "token_classification",
        pd.DataFrame({"row_id": ids, "text": texts, "label": gold, "pred": bad}),
    )
    b = _run(
        tmp_path / "b",
        "token_classification",
        pd.DataFrame({"row_id": ids, "text": texts, "label": gold, "pred": good}),
    )
    paired = compare_runs(a, b)["paired"]
    # A finds 60 LOC + 30 PER of 120 entities and predicts 120: F1 0.75; B is perfect.
    assert paired["f1"]["diff"] == pytest.approx(0.25)
    assert paired["f1"]["verdict"] == "B is better" and set(paired) == {
        "f1",
        "precision",
        "recall",
        "macro_f1",
    }


def test_multilabel_and_mismatched_rows(tmp_path: Path) -> None:
    ids = [str(i) for i in range(80)]
    gold = [["x", "y"] if i % 2 else ["x"] for i in range(80)]
    a = _run(tmp_path / "a", "multilabel", pd.DataFrame({"row_id": ids, "label": gold, "pred": [["x"]] * 80}))
    b = _run(tmp_path / "b", "multilabel", pd.DataFrame({"row_id": ids, "label": gold, "pred": gold}))
    paired = compare_runs(a, b)["paired"]
    assert paired["subset_accuracy"]["diff"] == pytest.approx(0.5)
    assert paired["micro_f1"]["verdict"] == "B is better"
    other = [["y"], *gold[1:]]
    c = _run(tmp_path / "c", "multilabel", pd.DataFrame({"row_id": ids, "label": other, "pred": gold}))
    r = compare_runs(a, c)
    assert r["paired"] == {} and r["same_test_rows"] is False and "'label' differ" in r["reason"]


def test_generation_pairs_perplexity_on_all_rows_and_rouge_on_the_generated_ones(tmp_path: Path) -> None:
    n = 50
    ids = [str(i) for i in range(n)]
    refs = ["the sky is blue"] * n
    tokens = np.full(n, 4.0)

    def frame(nll: float, gens: list[str | None]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "row_id": ids,
                "reference": refs,
                "generation": gens,
                "nll": np.full(n, nll) + np.arange(n) * 0.01,
                "tokens": tokens,
                "exact_match": np.nan,
                "rouge_l": np.nan,
            }
        )

    a = _run(tmp_path / "a", "sft", frame(8.0, ["the sky"] * 20 + [None] * 30))
    b = _run(tmp_path / "b", "sft", frame(4.0, ["the sky is blue"] * 20 + [None] * 30))
    paired = compare_runs(a, b)["paired"]
    assert paired["perplexity"]["n"] == n and paired["perplexity"]["verdict"] == "B is better"
    assert paired["perplexity"]["lower_is_better"] is True
    assert paired["rouge_l"]["n"] == 20 and paired["exact_match"]["diff"] == pytest.approx(1.0)
    assert paired["loss"]["diff"] == pytest.approx(-4.0 / 4.0)
