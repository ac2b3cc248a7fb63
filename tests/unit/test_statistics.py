"""Clustered bootstrap, slice intervals, gate families, power, temperature scaling and coverage."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy.stats import binomtest, norm

from tuneproof.data.split import split_indices, straddling_clusters
from tuneproof.errors import ProtocolError
from tuneproof.evaluate.bootstrap import bootstrap_indices, replicates
from tuneproof.evaluate.calibration import apply_temperature, fit_temperature
from tuneproof.evaluate.classification import DEFAULT_INTERVAL, evaluate_classification
from tuneproof.evaluate.cluster_bootstrap import cluster_bootstrap_indices, cluster_codes
from tuneproof.evaluate.coverage import Scenario, coverage, true_value
from tuneproof.evaluate.metrics import accuracy_stat, ece_stat
from tuneproof.evaluate.power import minimum_detectable_effects
from tuneproof.gates import check_gates
from tuneproof.gates.family import adjusted_alphas, replicate_p
from tuneproof.protocol import parse_protocol, validate_protocol
from tuneproof.protocol.schema import EvaluateSpec, GateSpec, SplitSpec
from tuneproof.report.limitations import limitations
from tuneproof.report.run_data import RunData

# -- the cluster bootstrap ---------------------------------------------------------------------------


def test_cluster_resamples_keep_clusters_whole_and_are_seeded() -> None:
    codes = cluster_codes(["a", "a", "b", "c", "c", "c", None, None])
    assert codes.tolist() == [0, 0, 1, 2, 2, 2, 3, 4]  # each missing value is a cluster of its own
    res = cluster_bootstrap_indices(codes, 50, seed=3)
    assert res.clusters == 5 and res.rows == 8 and res.samples == 50
    for rows in res.sets:
        drawn = codes[rows]
        # Every cluster drawn comes with all of its rows (a multiple of its size).
        for c, size in zip(*np.unique(codes, return_counts=True), strict=True):
            assert (drawn == c).sum() % size == 0
    again = cluster_bootstrap_indices(codes, 50, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(res.sets, again.sets, strict=True))
    assert res.stacked() is None  # unequal cluster sizes: resamples of different lengths


def test_equal_clusters_stack_and_give_the_same_replicates_as_the_loop() -> None:
    codes = np.repeat(np.arange(20), 5)
    correct = (np.random.default_rng(0).random(100) < 0.7).astype(float)
    res = cluster_bootstrap_indices(codes, 200, seed=1)
    stacked = res.stacked()
    assert stacked is not None and stacked.shape == (200, 100)
    looped = np.array([correct[s].mean() for s in res.sets])
    np.testing.assert_allclose(replicates(accuracy_stat(correct), res), looped, atol=1e-12)


def test_cluster_resamples_drawn_in_blocks_are_the_whole_draw_of_before() -> None:
    codes = cluster_codes(["a", "a", "b", "c", "c", "c", None, "d", "d"] * 7)
    res = cluster_bootstrap_indices(codes, 101, seed=11)
    # Before: one (samples, C) draw of cluster numbers from default_rng(seed), held whole.
    members = [np.flatnonzero(codes == j) for j in range(int(codes.max()) + 1)]
    whole = np.random.default_rng(11).integers(0, len(members), size=(101, len(members)))
    want = [np.concatenate([members[j] for j in row]) for row in whole]
    for step in (1, 7, 101, 500):
        got = [s for block in res.blocks(step) for s in block]
        assert len(got) == 101 and all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))
    # The replicates, computed block by block, are the loop over the whole draw's resamples.
    correct = (np.random.default_rng(2).random(codes.size) < 0.6).astype(float)
    looped = np.array([correct[s].mean() for s in want])
    np.testing.assert_array_equal(replicates(accuracy_stat(correct), res), looped)


def _clustered_eval(cluster: bool) -> dict[str, Any]:
    rng = np.random.default_rng(5)
    k_clusters, size = 40, 15
    codes = np.repeat(np.arange(k_clusters), size)
    skill = rng.normal(0, 1.2, k_clusters)[codes]  # some movies are much harder than others
    y = rng.integers(0, 2, codes.size)
    right = rng.random(codes.size) < 1 / (1 + np.exp(-(1.4 + skill)))
    pred = np.where(right, y, 1 - y)
    probs = np.where(pred[:, None] == np.arange(2), 0.8, 0.2)
    base = np.full_like(probs, 0.5)
    spec = EvaluateSpec(
        bootstrap_samples=400, baselines=["majority"], cluster_by="movie" if cluster else None
    )
    return evaluate_classification(
        y, probs, {"majority": base}, ["a", "b"], spec, seed=0, clusters=codes if cluster else None
    )


def test_cluster_by_widens_intervals_and_reports_how_much() -> None:
    rows, clustered = _clustered_eval(False), _clustered_eval(True)
    assert rows["model"]["accuracy"]["value"] == clustered["model"]["accuracy"]["value"]
    info = clustered["clustering"]
    assert info["clusters"] == 40 and info["rows"] == 600 and info["column"] == "movie"
    # The row-level intervals beside the clustered ones are the ones a run without cluster_by reports.
    assert info["row_level"]["accuracy"] == rows["model"]["accuracy"]
    assert info["width_ratio"]["accuracy"] > 1.5  # strong cluster effect: far wider
    assert "clustering" not in rows


# -- slices ------------------------------------------------------------------------------------------


def test_slices_get_intervals_and_small_ones_are_not_gated() -> None:
    rng = np.random.default_rng(2)
    n = 300
    y = rng.integers(0, 2, n)
    pred = np.where(rng.random(n) < 0.85, y, 1 - y)
    probs = np.where(pred[:, None] == np.arange(2), 0.9, 0.1)
    big, small = np.zeros(n, bool), np.zeros(n, bool)
    big[:280], small[280:] = True, True
    small[280:] = True
    spec = EvaluateSpec(bootstrap_samples=300, baselines=[], slice_min_rows=30)
    out = evaluate_classification(y, probs, {}, ["a", "b"], spec, 0, {"big": big, "small": small})
    by_name = {s["name"]: s for s in out["slices"]}
    assert by_name["big"]["gated"] is True and by_name["small"]["gated"] is False
    acc = by_name["big"]["intervals"]["accuracy"]
    assert acc["low"] < acc["value"] < acc["high"]
    assert acc["value"] == by_name["big"]["metrics"]["accuracy"]
    # Decided on the lower bound: a floor between the bound and the point fails.
    floor = (acc["low"] + acc["value"]) / 2
    verdict = check_gates([GateSpec(metric="accuracy", slice_min=floor)], out).verdicts[0]
    assert not verdict.passed and "lower bound" in verdict.decided_on
    assert "small (n=20)" in verdict.detail  # shown, not gated
    low_floor = acc["low"] - 0.01
    assert check_gates([GateSpec(metric="accuracy", slice_min=low_floor)], out).verdicts[0].passed


# -- gates as a family -------------------------------------------------------------------------------


def test_holm_and_bonferroni_levels() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    assert adjusted_alphas(p, 0.05, "bonferroni") == [0.0125] * 4
    holm = adjusted_alphas(p, 0.05, "holm")
    # Sorted: 0.005 <= .05/4, 0.01 <= .05/3, 0.03 > .05/2 stops; 0.04 is never tested.
    assert holm[3] == pytest.approx(0.0125) and holm[0] == pytest.approx(0.05 / 3)
    assert holm[2] == pytest.approx(0.025) and holm[1] == 0.0
    # A gate without a p-value is one of the m claims (it widens the others' correction).
    assert adjusted_alphas([0.001, None], 0.05, "holm")[0] == pytest.approx(0.025)


def test_replicate_p_matches_the_percentile_decision() -> None:
    reps = np.random.default_rng(0).normal(0.8, 0.02, 4000)
    threshold = 0.77
    p = replicate_p(reps, threshold, passes_above=True)
    assert p is not None
    low_at = {a: np.percentile(reps, 100 * a / 2) for a in (p * 0.9, p * 1.1)}
    assert low_at[p * 1.1] >= threshold > low_at[p * 0.9]


def test_a_family_fails_a_gate_that_passes_on_its_own() -> None:
    rng = np.random.default_rng(11)
    n = 400
    y = rng.integers(0, 2, n)
    pred = np.where(rng.random(n) < 0.82, y, 1 - y)
    probs = np.where(pred[:, None] == np.arange(2), 0.85, 0.15)
    gates = [GateSpec(metric="accuracy", min=0.0), GateSpec(metric="ece", max=0.9)]
    spec = EvaluateSpec(bootstrap_samples=2000, baselines=[], gate_family="bonferroni")
    base = evaluate_classification(y, probs, {}, ["a", "b"], spec, 0, gates=gates)
    low = base["model"]["accuracy"]["low"]
    # A floor just under the 95% lower bound: clears it alone, not at 97.5% (Bonferroni over 2 gates).
    gates[0] = GateSpec(metric="accuracy", min=low - 0.002)
    metrics = evaluate_classification(y, probs, {}, ["a", "b"], spec, 0, gates=gates)
    alone = check_gates(gates, metrics)
    family = check_gates(gates, metrics, "bonferroni")
    assert alone.passed and not family.passed
    v = family.verdicts[0]
    assert v.level == pytest.approx(0.025) and v.p_value is not None and v.p_value > 0.025
    assert family.family is not None and family.family["method"] == "bonferroni"
    assert "95%" in family.family["statement"]
    assert check_gates(gates, metrics, "holm").verdicts[1].passed  # ECE far below its ceiling


# -- the paired comparison that an unpaired test misses -----------------------------------------------


def test_paired_bootstrap_finds_what_an_unpaired_test_misses() -> None:
    """n = 220: A right on 141, B on 123; A alone right on 30 rows, B alone on 12 (lm-evaluation-
    harness PR #3868 reports paired p = 0.008, unpaired p = 0.080 for a case of this size)."""
    both, a_only, b_only = 111, 30, 12
    neither = 220 - both - a_only - b_only
    a = np.r_[np.ones(both), np.ones(a_only), np.zeros(b_only), np.zeros(neither)]
    b = np.r_[np.ones(both), np.zeros(a_only), np.ones(b_only), np.zeros(neither)]
    pooled = (a.sum() + b.sum()) / 440
    z = (a.mean() - b.mean()) / np.sqrt(pooled * (1 - pooled) * 2 / 220)
    assert 2 * norm.sf(z) == pytest.approx(0.080, abs=0.002)  # unpaired two-proportion test
    assert binomtest(a_only, a_only + b_only).pvalue == pytest.approx(0.008, abs=0.001)  # McNemar
    idx = bootstrap_indices(220, 20_000, seed=0)
    paired = replicates(accuracy_stat(a), idx) - replicates(accuracy_stat(b), idx)
    unpaired = replicates(accuracy_stat(a), idx) - replicates(
        accuracy_stat(b), bootstrap_indices(220, 20_000, 1)
    )
    p_paired, p_unpaired = replicate_p(paired, 0.0, True), replicate_p(unpaired, 0.0, True)
    assert p_paired is not None and p_unpaired is not None
    # The bootstrap p-value is the asymptotic one (about 0.005 here); the exact McNemar test is a
    # little more conservative. Either way the paired analysis finds the difference at 1%.
    assert 0.001 <= p_paired <= 0.01
    assert p_unpaired == pytest.approx(0.080, abs=0.02) and p_unpaired > 0.05


# -- temperature scaling ------------------------------------------------------------------------------


def test_temperature_recovers_overconfidence_and_keeps_predictions() -> None:
    rng = np.random.default_rng(4)
    n = 4000
    logits = rng.normal(0, 2.0, (n, 3))
    true_p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(3, p=row) for row in true_p])
    over = np.exp(logits * 2.5) / np.exp(logits * 2.5).sum(1, keepdims=True)  # T = 2.5 undoes it
    t = fit_temperature(over, y)
    assert t == pytest.approx(2.5, rel=0.08)
    fixed = apply_temperature(over, t)
    assert np.array_equal(fixed.argmax(1), over.argmax(1))
    np.testing.assert_allclose(fixed.sum(1), 1.0, atol=1e-9)
    idx = np.arange(n)[None, :]

    def ece(p: np.ndarray) -> float:
        return float(ece_stat(p.max(1), (p.argmax(1) == y).astype(float), 10)(idx)[0])

    assert ece(fixed) < ece(over) / 3
    with pytest.raises(ValueError):
        apply_temperature(over, 0.0)


# -- splitting by group, and the leakage count ---------------------------------------------------------


def test_group_split_keeps_each_group_in_one_split_and_leakage_counts_straddlers() -> None:
    groups = [f"m{i // 7}" for i in range(700)]
    idx = split_indices(700, None, SplitSpec(group_by="movie"), seed=3, groups=groups)
    where = {s: {groups[i] for i in rows} for s, rows in idx.items()}
    assert not where["train"] & where["test"] and not where["train"] & where["validation"]
    assert sum(len(r) for r in idx.values()) == 700
    report = straddling_clusters({s: [groups[i] for i in rows] for s, rows in idx.items()}, "movie")
    assert report["straddling"] == 0 and report["clusters"] == 100
    mixed = straddling_clusters({"train": ["a", "b", "c"], "test": ["c", "b", None]}, "movie")
    assert (
        mixed["straddling"] == 2 and mixed["pairs"] == {"train/test": 2} and mixed["examples"] == ["b", "c"]
    )


def _raw(**evaluate: Any) -> dict[str, Any]:
    return {
        "name": "t",
        "model": {"source": "m"},
        "data": {"files": ["d.csv"], "metadata_columns": ["movie"]},
        "evaluate": {"baselines": ["majority", "tfidf_logreg"], **evaluate},
        "gates": [{"metric": "accuracy", "beats": "tfidf_logreg", "by": 0.01}],
    }


def test_protocol_checks_the_grouping_columns() -> None:
    assert validate_protocol(_raw(cluster_by="movie")).evaluate.cluster_by == "movie"
    with pytest.raises(ValidationError, match="metadata_columns"):
        validate_protocol(_raw(cluster_by="patient"))
    with pytest.raises(ValidationError, match=r"evaluate\.cluster_by does not apply to regression"):
        validate_protocol(
            {**_raw(cluster_by="movie"), "task": "regression", "evaluate": {"cluster_by": "movie"}}
        )
    text = "name: t\nmodel: {source: m}\ndata: {files: [d.csv]}\ncalibration: platt\n"
    with pytest.raises(ProtocolError):
        parse_protocol(text)


# -- power before training ------------------------------------------------------------------------------


def _splits(n_val: int, n_test: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(0)
    words = ["good", "bad", "fine", "awful", "great", "poor"]

    def frame(n: int) -> pd.DataFrame:
        label = rng.integers(0, 2, n)
        # A quarter of the texts are written from the other class's words: a baseline near 75%.
        flipped = np.where(rng.random(n) < 0.25, 1 - label, label)
        text = [
            " ".join(rng.choice(words[lab::2], 4)) + " " + " ".join(rng.choice(words, 3)) for lab in flipped
        ]
        return pd.DataFrame(
            {"row_id": [str(i) for i in range(n)], "text": text, "label": np.where(label, "pos", "neg")}
        )

    return {"train": frame(400), "validation": frame(n_val), "test": frame(n_test)}


def test_minimum_detectable_effect_shrinks_with_the_test_split_and_warns_below_the_margin() -> None:
    protocol = validate_protocol(_raw())
    small = minimum_detectable_effects(protocol, _splits(200, 100))
    large = minimum_detectable_effects(protocol, _splits(200, 1600))
    assert small is not None and large is not None
    mde_small, mde_large = small["gates"][0]["mde"], large["gates"][0]["mde"]
    assert mde_small == pytest.approx(4 * mde_large, rel=0.05)  # sqrt(16) times the rows
    assert small["gates"][0]["warning"] and "gates[0]" in small["gates"][0]["warning"]
    assert "validation" in small["gates"][0]["source"]
    family = validate_protocol({**_raw(), "gates": [*_raw()["gates"], {"metric": "accuracy", "min": 0.5}]})
    wider = minimum_detectable_effects(
        family.model_copy(update={"evaluate": family.evaluate.model_copy(update={"gate_family": "holm"})}),
        _splits(200, 100),
    )
    assert wider is not None and wider["gates"][0]["mde"] > mde_small  # Bonferroni's level: 1 - 0.05/2


# -- limitations -------------------------------------------------------------------------------------------


def test_limitations_do_not_compare_calibration_with_a_constant_predictor(tmp_path: Any) -> None:
    worse = {"diff": 0.03, "low": 0.02, "high": 0.04}  # model ECE above the baseline's
    metrics = {
        "n": 2000,
        "confidence": 0.95,
        "model": {"accuracy": {"value": 0.8, "low": 0.79, "high": 0.81}},
        "baselines": {"majority": {}, "tfidf_logreg": {}},
        "comparisons": {"majority": {"ece": worse}, "tfidf_logreg": {"ece": worse}},
    }
    run = RunData(path=tmp_path, metrics=metrics)
    items = " ".join(limitations(run))
    assert "majority baseline on ece" not in items
    assert "Worse than the tfidf_logreg baseline on ece" in items


# -- coverage ------------------------------------------------------------------------------------------------

# 300 repetitions: the share's standard error is 0.0126 at 95%, so [0.91, 0.99] is about -3/+3 standard
# errors around 95% and excludes 90%; fixed seeds make each figure reproducible exactly.
REPS, BAND = 300, (0.91, 0.99)


@pytest.mark.parametrize(
    "scenario",
    [
        Scenario("accuracy", 150),
        Scenario("macro_f1", 200, rare=0.1),
        Scenario("paired_difference", 200),
    ],
    ids=lambda s: s.name,
)
def test_the_default_intervals_cover_95_percent(scenario: Scenario) -> None:
    got = coverage(scenario, REPS, "row", samples=400, seed=1, method=DEFAULT_INTERVAL)
    assert BAND[0] <= got <= BAND[1], f"{scenario.name}: coverage {got:.3f}"


def test_row_bootstrap_under_covers_clustered_rows_and_the_cluster_bootstrap_fixes_it() -> None:
    s = Scenario("paired_difference", 600, clusters=60)
    assert true_value(s) == pytest.approx(0.047, abs=0.002)
    rows = coverage(s, 200, "row", samples=300, seed=2)
    clusters = coverage(s, 200, "cluster", samples=300, seed=2)
    assert rows < 0.85, rows
    assert 0.89 <= clusters <= 0.99, clusters


# -- BCa ----------------------------------------------------------------------------------------------------


def test_bca_matches_scipy_on_a_skewed_mean() -> None:
    from scipy.stats import bootstrap

    from tuneproof.evaluate.bca import bca_interval, jackknife, jackknife_units
    from tuneproof.evaluate.metrics import mean_stat

    x = np.random.default_rng(3).exponential(1.0, 60)
    stat = mean_stat(x)
    idx = bootstrap_indices(60, 20_000, seed=0)
    ours = bca_interval(
        float(x.mean()), replicates(stat, idx), jackknife(stat, 60, jackknife_units(60)), 0.95
    )
    ref = bootstrap((x,), np.mean, method="BCa", n_resamples=20_000, random_state=1).confidence_interval
    assert ours[0] == pytest.approx(ref.low, abs=0.02) and ours[1] == pytest.approx(ref.high, abs=0.03)
    # Skewed data: BCa moves both bounds up relative to the percentile interval.
    pct = np.percentile(replicates(stat, idx), [2.5, 97.5])
    assert ours[0] > pct[0] and ours[1] > pct[1]


def test_bca_is_the_default_and_changes_only_the_bounds() -> None:
    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 150)
    pred = np.where(rng.random(150) < 0.8, y, 1 - y)
    probs = np.where(pred[:, None] == np.arange(2), 0.8, 0.2)

    def run(interval: Any) -> dict[str, Any]:
        spec = EvaluateSpec(baselines=[], bootstrap_samples=500, interval=interval)
        return evaluate_classification(y, probs, {}, ["a", "b"], spec, 0)

    pct, bca, default = run("percentile"), run("bca"), run(None)
    assert (pct["interval"], bca["interval"], default["interval"]) == ("percentile", "bca", "bca")
    assert default["model"] == bca["model"]
    for m in ("accuracy", "macro_f1"):
        assert bca["model"][m]["value"] == pct["model"][m]["value"]
        assert bca["model"][m]["low"] == pytest.approx(pct["model"][m]["low"], abs=0.03)
    with pytest.raises(ValidationError, match=r"evaluate\.interval does not apply to regression"):
        validate_protocol({**_raw(), "task": "regression", "evaluate": {"interval": "bca"}, "gates": []})


def test_bca_p_value_agrees_with_the_bca_bound() -> None:
    from tuneproof.evaluate.bca import bca_interval, bca_p_value, jackknife, jackknife_units
    from tuneproof.evaluate.metrics import mean_stat

    x = np.random.default_rng(5).exponential(1.0, 80)
    stat = mean_stat(x)
    idx = bootstrap_indices(80, 20_000, seed=2)
    reps, jack = replicates(stat, idx), jackknife(stat, 80, jackknife_units(80))
    threshold = 0.8
    p = bca_p_value(float(x.mean()), reps, jack, threshold, passes_above=True)
    assert p is not None and 0.001 < p < 0.5
    # The lower bound at level 1 - p sits at the threshold (within the replicates' granularity).
    low, _ = bca_interval(float(x.mean()), reps, jack, 1.0 - p)
    assert low == pytest.approx(threshold, abs=0.01)
