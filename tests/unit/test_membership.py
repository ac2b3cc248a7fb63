"""The membership-inference audit: its statistic and interval, the protocol section, and a run that
tells a model which memorised its few training rows from one trained briefly on many."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from helpers import toy_reviews, write_jsonl, write_protocol
from tuneproof.privacy import membership
from tuneproof.privacy.spec import PrivacySpec
from tuneproof.protocol.check import check_protocol


def test_auc_is_half_when_losses_reveal_nothing_and_one_when_they_separate() -> None:
    rng = np.random.default_rng(0)
    losses = rng.exponential(1, 300)
    same = membership.audit(losses, losses.copy(), 0.95, 500, 0)["membership_auc"]
    assert same["value"] == pytest.approx(0.5, abs=1e-12) and same["low"] < 0.5 < same["high"]
    apart = membership.audit(rng.uniform(0, 1, 50), rng.uniform(2, 3, 60), 0.95, 200, 0)
    assert apart["membership_auc"] == {"value": 1.0, "low": 1.0, "high": 1.0}
    assert apart["details"]["advantage"] == 1.0
    assert (apart["details"]["members"], apart["details"]["non_members"]) == (50, 60)


def test_the_interval_covers_one_half_for_exchangeable_losses() -> None:
    # Members and non-members from one distribution: a 95% interval should hold 0.5 about 95% of
    # the time; over 60 independent draws at least 51 (85%) must.
    covered = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        auc = membership.audit(rng.exponential(1, 80), rng.exponential(1, 80), 0.95, 300, seed)
        covered += auc["membership_auc"]["low"] <= 0.5 <= auc["membership_auc"]["high"]
    assert covered >= 51, covered


def test_the_interval_matches_a_direct_bootstrap_with_sklearn() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    members, others = rng.normal(0.8, 1, 120), rng.normal(1.0, 1, 90)
    got = membership.audit(members, others, 0.9, 400, seed=5)["membership_auc"]
    draw = np.random.default_rng([5, 19])
    reps = []
    for _ in range(400):
        m, o = members[draw.integers(0, 120, 120)], others[draw.integers(0, 90, 90)]
        reps.append(roc_auc_score(np.r_[np.ones(120), np.zeros(90)], -np.r_[m, o]))
    low, high = np.percentile(reps, [5, 95])
    assert got["low"] == pytest.approx(low, abs=1e-12) and got["high"] == pytest.approx(high, abs=1e-12)
    assert got["value"] == pytest.approx(
        roc_auc_score(np.r_[np.ones(120), np.zeros(90)], -np.r_[members, others])
    )


def test_sampling_drops_resampled_duplicates_and_is_seeded() -> None:
    rows: list[dict[str, Any]] = [{"row_id": f"r{i}"} for i in range(30)] + [{"row_id": "r1#dup"}]
    a, b = membership.sample_rows(rows, 10, 4), membership.sample_rows(rows, 10, 4)
    assert a == b and len(a) == 10 and all("#dup" not in r["row_id"] for r in a)
    assert len(membership.sample_rows(rows, 100, 4)) == 30


def test_the_audit_needs_rows_on_both_sides() -> None:
    with pytest.raises(ValueError, match="two training and two held-out"):
        membership.audit(np.array([0.1]), np.array([0.2, 0.3]), 0.95, 100, 0)


def test_spec_is_strict() -> None:
    assert PrivacySpec.model_validate({"audit": {}}).audit.max_rows == 500  # type: ignore[union-attr]
    with pytest.raises(ValidationError):
        PrivacySpec.model_validate({"audit": {"max_row": 5}})
    with pytest.raises(ValidationError):
        PrivacySpec.model_validate({"audit": {"max_rows": 1}})


def test_a_gate_on_membership_auc_needs_the_audit(tmp_path: Path, tiny_bert: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", toy_reviews(60))
    gates = "  - {metric: membership_auc, max: 0.55}"
    without = write_protocol(tmp_path / "a.yaml", tiny_bert, data, gates=gates)
    _, problems = check_protocol(without, read_data=False)
    assert any("membership_auc" in str(p) for p in problems)
    with_audit = write_protocol(tmp_path / "b.yaml", tiny_bert, data, gates=gates)
    with_audit.write_text(with_audit.read_text() + "privacy: {audit: {max_rows: 100}}\n")
    _, problems = check_protocol(with_audit, read_data=False)
    assert problems == []


# --- end to end: memorised against briefly trained ---------------------------------------------------

# No validation split: with one, the run would keep its best validation checkpoint, not the last.
AUDIT = """split: {train: 0.6, validation: 0.0, test: 0.4}
privacy:
  audit: {max_rows: 200, bootstrap_samples: 500}
"""
# 0.65, not 0.55: with 64 held-out rows the interval is about +-0.1 wide, so even a model that
# reveals nothing cannot show an upper bound under 0.55 (docs/privacy.md: rows needed).
GATES = "  - {metric: accuracy, min: 0.0}\n  - {metric: membership_auc, max: 0.65}"


def _audited_run(tmp: Path, tiny_bert: Path, rows: int, epochs: str, lr: str, dp: str = "") -> dict[str, Any]:
    from tuneproof.runner import run

    # Heavy label noise: a model can only fit the flipped training labels by memorising those rows.
    data = write_jsonl(tmp / "d.jsonl", toy_reviews(rows, seed=1, noise=0.35))
    proto = write_protocol(tmp / "p.yaml", tiny_bert, data, epochs=epochs, lr=lr, gates=GATES)
    proto.write_text(proto.read_text() + AUDIT + dp)
    outcome = run(proto, output_dir=tmp / "runs")
    metrics = json.loads((outcome.run_dir / "metrics.json").read_text())
    gates = json.loads((outcome.run_dir / "gates.json").read_text())["verdicts"]
    page = (outcome.run_dir / "report.html").read_text()
    assert "Privacy: DP training and memorisation audit" in page and "membership AUC" in page
    return {"auc": metrics["model"]["membership_auc"], "details": metrics["privacy"], "gate": gates[1]}


@pytest.mark.integration
def test_the_audit_tells_a_memorising_model_from_a_briefly_trained_one(
    tmp_path: Path, tiny_bert: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    memorised = _audited_run(tmp_path / "a", tiny_bert, rows=160, epochs="40", lr="0.001")
    brief = _audited_run(tmp_path / "b", tiny_bert, rows=160, epochs="1", lr="0.0003")
    assert memorised["auc"]["low"] > 0.65, memorised
    assert brief["auc"]["low"] < 0.5 < brief["auc"]["high"], brief
    assert memorised["details"]["membership_audit"]["members"] == 96
    assert memorised["gate"]["metric"] == "membership_auc" and not memorised["gate"]["passed"]
    assert brief["gate"]["passed"], brief["gate"]


@pytest.mark.integration
def test_the_audit_tells_an_overfit_model_from_a_dp_one_trained_alike(
    tmp_path: Path, tiny_bert: Path
) -> None:
    """The same rows, epochs and learning rate; only DP-SGD differs (noise 1.0, clipping 1.0)."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    overfit = _audited_run(tmp_path / "a", tiny_bert, rows=160, epochs="40", lr="0.001")
    dp_text = "  dp_sgd: {noise_multiplier: 1.0, delta: 1.0e-5, max_grad_norm: 1.0}\n"
    private = _audited_run(tmp_path / "b", tiny_bert, rows=160, epochs="40", lr="0.001", dp=dp_text)
    assert overfit["auc"]["low"] > 0.65, overfit
    assert private["details"]["dp_sgd"]["steps"] == 40 * 6  # 96 training rows, expected batch 16
    assert private["auc"]["low"] < 0.5 < private["auc"]["high"], private
    assert private["auc"]["high"] < overfit["auc"]["low"], (private, overfit)
    assert private["gate"]["passed"] and not overfit["gate"]["passed"]
