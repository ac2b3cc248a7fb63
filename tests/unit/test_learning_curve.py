"""The learning curve's parts without a model: nested stratified subsets, the point cache (reuse,
adding a size, resuming an interrupted curve, the budget), the two-level bootstrap and its answers,
and the report section."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tuneproof.curve.points import FULL, PointCache, compute_points
from tuneproof.curve.stats import CurveBootstrap, beats_from, difference, smallest_enough
from tuneproof.curve.subsets import class_orders, nested_subset, per_class_counts

Y_TRAIN = np.array([0] * 60 + [1] * 40 + [2] * 25)
Y_TEST = np.array([0, 1, 2] * 40)


def test_subsets_are_stratified_nested_and_differ_between_repeats() -> None:
    orders = [class_orders(Y_TRAIN, r, seed=13) for r in range(3)]
    for o in orders:
        previous: set[int] = set()
        for n in (4, 8, 16, 32):
            rows = nested_subset(o, n)
            counts = per_class_counts(Y_TRAIN, rows)
            assert counts == {0: n, 1: n, 2: min(n, 25)}
            assert previous <= set(rows.tolist())
            previous = set(rows.tolist())
    subsets = [tuple(nested_subset(o, 8)) for o in orders]
    assert len(set(subsets)) == 3
    # A pure function of seed and repeat: the same subsets in another call.
    assert tuple(nested_subset(class_orders(Y_TRAIN, 1, seed=13), 8)) == subsets[1]


class FakeTrainer:
    """Probabilities that depend on the rows only (a deterministic 'model'); counts its calls and
    can stop after a number of them, like a run killed mid-curve."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.stop_after = stop_after

    def __call__(self, method: str, rows: np.ndarray) -> np.ndarray:
        if self.stop_after is not None and len(self.calls) >= self.stop_after:
            raise KeyboardInterrupt
        self.calls.append((method, len(rows)))
        rng = np.random.default_rng(int(rows.sum()) + (7 if method == "tfidf_logreg" else 0))
        acc = min(0.95, 0.5 + 0.01 * len(rows))
        right = rng.random(len(Y_TEST)) < acc
        pred = np.where(right, Y_TEST, (Y_TEST + 1) % 3)
        probs = np.full((len(Y_TEST), 3), 0.1)
        probs[np.arange(len(Y_TEST)), pred] = 0.8
        return probs


def _curve(tmp: Path, sizes: list[int], trainer: FakeTrainer, **kw: object):  # type: ignore[no-untyped-def]
    cache = PointCache(tmp / "cache", "ctx", {"protocol": "settings-a"})
    return compute_points(
        Y_TRAIN, sizes, 2, ["protocol", "tfidf_logreg"], 13, cache, trainer, {"tfidf_logreg": None}, **kw
    )


def test_points_are_cached_and_a_new_size_trains_only_itself(tmp_path: Path) -> None:
    first = FakeTrainer()
    a = _curve(tmp_path, [4, 8], first)
    assert a.trained == len(first.calls) == 2 * 2 * 2 + 1  # sizes x repeats x methods + tfidf on all
    assert FULL in a.probs["tfidf_logreg"] and FULL not in a.probs["protocol"]
    assert ("tfidf_logreg", len(Y_TRAIN)) in first.calls
    again = FakeTrainer()
    b = _curve(tmp_path, [4, 8], again)
    assert again.calls == [] and b.cached == a.trained
    for method in ("protocol", "tfidf_logreg"):
        for size in (4, 8):
            for pa, pb in zip(a.probs[method][size], b.probs[method][size], strict=True):
                np.testing.assert_array_equal(pa, pb)
    grown = FakeTrainer()
    c = _curve(tmp_path, [4, 8, 16], grown)
    assert sorted(set(grown.calls)) == [("protocol", 48), ("tfidf_logreg", 48)]
    assert len(grown.calls) == 4 and c.cached == a.trained
    # Another method setting is another point: nothing is reused across it.
    other = PointCache(tmp_path / "cache", "ctx", {"protocol": "settings-b"})
    changed = FakeTrainer()
    compute_points(Y_TRAIN, [4], 1, ["protocol"], 13, other, changed, {})
    assert changed.calls == [("protocol", 12)]


def test_an_interrupted_curve_resumes_from_the_points_it_finished(tmp_path: Path) -> None:
    killed = FakeTrainer(stop_after=3)
    with pytest.raises(KeyboardInterrupt):
        _curve(tmp_path, [4, 8], killed)
    assert not list((tmp_path / "cache").glob(".tmp-*"))  # no half-written point is left
    resumed = FakeTrainer()
    out = _curve(tmp_path, [4, 8], resumed)
    assert out.cached == 3 and out.trained == len(resumed.calls) == 9 - 3
    uninterrupted = _curve(tmp_path / "fresh", [4, 8], FakeTrainer())
    for size in (4, 8):
        for pa, pb in zip(out.probs["protocol"][size], uninterrupted.probs["protocol"][size], strict=True):
            np.testing.assert_array_equal(pa, pb)


def test_the_budget_stops_new_points_but_keeps_cached_ones(tmp_path: Path) -> None:
    # A fake clock that moves 10 s at every reading: each trained point reads it three times (the
    # budget check, its start, its record), so four points fit in 125 s and the fifth is refused.
    ticks = iter(range(0, 10_000, 10))
    out = _curve(tmp_path, [4, 8, 16], FakeTrainer(), budget_seconds=125, clock=lambda: float(next(ticks)))
    assert out.trained == 4 and len(out.skipped) == 3 * 2 * 2 + 1 - 4
    # The smallest sizes go first, so what the budget cuts is the large end.
    assert set(out.probs["protocol"]) == {4} and set(out.probs["tfidf_logreg"]) == {4}
    assert not any("n=4 " in s for s in out.skipped) and "tfidf_logreg n=all repeat=0" in out.skipped
    # The cached points stay free once the budget is spent.
    later = _curve(tmp_path, [4, 8], FakeTrainer(), budget_seconds=0.001, clock=lambda: float(next(ticks)))
    assert later.cached == 4 and later.trained == 0 and set(later.probs["protocol"]) == {4}


def test_separate_processes_can_train_different_repeats_into_one_cache(tmp_path: Path) -> None:
    # Repeat 1 alone, then repeat 0 alone, then the whole curve: it trains nothing, and every point
    # is the one an uninterrupted single run makes (the same subsets, the same cache keys).
    second = FakeTrainer()
    only_1 = _curve(tmp_path, [4, 8], second, only_repeats=[1])
    assert only_1.trained == len(second.calls) == 2 * 2 + 1
    assert all(len(v) == 1 for v in only_1.probs["protocol"].values())
    _curve(tmp_path, [4, 8], FakeTrainer(), only_repeats=[0])
    again = FakeTrainer()
    whole = _curve(tmp_path, [4, 8], again)
    assert again.calls == [] and whole.cached == 9
    alone = _curve(tmp_path / "fresh", [4, 8], FakeTrainer())
    for size in (4, 8):
        for pa, pb in zip(whole.probs["protocol"][size], alone.probs["protocol"][size], strict=True):
            np.testing.assert_array_equal(pa, pb)
    np.testing.assert_array_equal(only_1.probs["protocol"][8][0], alone.probs["protocol"][8][1])


def _probs_with_accuracy(acc: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    right = rng.random(len(Y_TEST)) < acc
    pred = np.where(right, Y_TEST, (Y_TEST + 1) % 3)
    return np.eye(3)[pred]


def test_intervals_include_the_spread_between_repeats() -> None:
    boot = CurveBootstrap(Y_TEST, 500, seed=1)
    same = _probs_with_accuracy(0.7, 0)
    steady = boot.point("accuracy", [same, same, same])
    spread = boot.point("accuracy", [_probs_with_accuracy(a, i) for i, a in enumerate((0.45, 0.7, 0.95))])
    assert steady.per_repeat == [steady.point] * 3
    assert steady.point == pytest.approx(float((same.argmax(1) == Y_TEST).mean()))
    assert spread.point == pytest.approx(np.mean(spread.per_repeat))
    width = np.percentile(spread.reps, 97.5) - np.percentile(spread.reps, 2.5)
    assert width > 1.5 * (np.percentile(steady.reps, 97.5) - np.percentile(steady.reps, 2.5))
    # Same repeats count: paired on test rows and repeat draws, so a point minus itself is exactly 0.
    d = difference(
        spread,
        boot.point("accuracy", [_probs_with_accuracy(a, i) for i, a in enumerate((0.45, 0.7, 0.95))]),
        0.95,
    )
    assert d == {"diff": 0.0, "low": 0.0, "high": 0.0}


def test_answers_follow_the_lower_bounds() -> None:
    vs_full = {8: {"low": -0.10}, 16: {"low": -0.015}, 32: {"low": -0.03}, 64: {"low": 0.0}}
    assert smallest_enough([8, 16, 32, 64], vs_full, margin=0.02) == 16
    assert smallest_enough([8], {8: {"low": -0.5}}, margin=0.02) is None
    vs_tf = {8: {"low": 0.01}, 16: {"low": -0.01}, 32: {"low": 0.02}, 64: {"low": 0.05}}
    assert beats_from([8, 16, 32, 64], vs_tf) == 32  # 8 alone is not "from": 16 breaks the run
    assert beats_from([8, 16], {8: {"low": -0.1}, 16: {"low": -0.2}}) is None
    assert beats_from([8, 16], {8: {"low": 0.1}, 16: {"low": None}}) is None


def test_summary_and_report_section_render(tmp_path: Path) -> None:
    from tuneproof.curve.run import summarize_curve
    from tuneproof.protocol import parse_protocol
    from tuneproof.report.curve_section import learning_curve as render
    from tuneproof.report.run_data import RunData

    protocol = parse_protocol(
        "name: c\nmodel: {source: m}\ndata: {files: [d.csv]}\n"
        "evaluate: {bootstrap_samples: 200, learning_curve: {sizes: [4, 8, 16], repeats: 2, margin: 0.05}}"
    )
    spec = protocol.evaluate.learning_curve
    assert spec is not None
    trainer = FakeTrainer()
    cache = PointCache(tmp_path, "ctx", {})
    points = compute_points(
        Y_TRAIN,
        [4, 8, 16],
        2,
        ["protocol", "tfidf_logreg"],
        13,
        cache,
        trainer,
        {"protocol": _probs_with_accuracy(0.9, 99), "tfidf_logreg": None},
    )
    curve = summarize_curve(
        protocol, spec, ["protocol", "tfidf_logreg"], [4, 8, 16], points, Y_TEST, ["a", "b", "c"]
    )
    assert [p["size"] for p in curve["points"]["protocol"]] == [4, 8, 16]
    assert all(p["n_repeats"] == 2 and len(p["repeats"]) == 2 for p in curve["points"]["protocol"])
    assert all(p["low"] <= p["value"] <= p["high"] for p in curve["points"]["protocol"])
    assert curve["full"]["protocol"]["value"] == pytest.approx(
        float((_probs_with_accuracy(0.9, 99).argmax(1) == Y_TEST).mean())
    )
    assert set(curve["enough"]) == {"protocol", "tfidf_logreg"}
    assert "Fine-tuning (full)" in curve["answer"] and "TF-IDF" in curve["answer"]
    assert curve["labels_per_class"]["16"] == {"a": 16, "b": 16, "c": 16}
    html = render(RunData(path=tmp_path, metrics={"learning_curve": curve}))
    assert html is not None and "<svg" in html and "labelled training rows per class" in html
    assert curve["answer"].split(":")[0] in html
    assert render(RunData(path=tmp_path, metrics={})) is None
