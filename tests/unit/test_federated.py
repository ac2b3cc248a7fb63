"""The federated pieces that need no Flower process: the protocol section, a site's own work, the
pooled intervals, the gates and the round checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from federated_helpers import write_federation

from tuneproof.errors import ProtocolError
from tuneproof.federated.checkpoints import latest_round, save_round
from tuneproof.federated.evidence import judge, scores, site_and_pooled
from tuneproof.federated.site import (
    Site,
    alone_arrays,
    confusion_replicates,
    data_summary,
    load_trainable,
    local_round,
    site_test,
    trainable_arrays,
)
from tuneproof.federated.site_protocol import site_protocol
from tuneproof.federated.spec import BeatsAlone, SiteFloor
from tuneproof.protocol import load_protocol
from tuneproof.protocol.schema import GateSpec


@pytest.fixture
def federation(tmp_path: Path, tiny_bert: Path) -> tuple[Path, dict[str, list[dict[str, str]]]]:
    return write_federation(tmp_path, tiny_bert, rounds=2)


def _rewrite(protocol: Path, old: str, new: str) -> Path:
    text = protocol.read_text()
    assert old in text
    protocol.write_text(text.replace(old, new, 1))
    return protocol


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "data: {labels: [neg, pos]",
            "data: {files: [x.jsonl], labels: [neg, pos]",
            "data.files: a federated",
        ),
        ("  rounds: 2\n", "  rounds: 2\n  strategy: fedsgd\n", "strategy"),
        ("  rounds: 2\n", "  rounds: 2\n  clients_per_round: 4\n", "at most the 3 sites"),
        ("  rounds: 2\n", "  rounds: 2\n  local_epochs: 2\n  local_steps: 3\n", "not both"),
        (
            "  rounds: 2\n",
            "  rounds: 2\n  secure_aggregation: true\n  clients_per_round: 1\n",
            "secure_aggregation: needs clients_per_round of 2",
        ),
        ("  rounds: 2\n", "  rounds: 2\n  secagg_clipping_range: 0\n", "secagg_clipping_range"),
        ("  rounds: 2\n", "  rounds: 2\n  colour: blue\n", "colour"),
        ("{name: south,", "{name: north,", "site names must be unique"),
        ("gates: [{metric: accuracy, min: 0.3}]", "gates: [{metric: ece, max: 0.1}]", "gates[0]"),
        ("data: {labels: [neg, pos], ", "data: {", "data.labels"),
    ],
)
def test_the_federated_section_is_checked(
    federation: tuple[Path, object], old: str, new: str, message: str
) -> None:
    protocol = _rewrite(federation[0], old, new)
    with pytest.raises(ProtocolError) as err:
        load_protocol(protocol)
    assert message in str(err.value)


def test_secure_aggregation_is_accepted(federation: tuple[Path, object]) -> None:
    protocol = _rewrite(federation[0], "  rounds: 2\n", "  rounds: 2\n  secure_aggregation: true\n")
    fed = load_protocol(protocol).protocol.federated
    assert fed is not None and fed.secure_aggregation and fed.secagg_clipping_range == 8.0


def test_a_plain_protocol_still_needs_its_data(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: x\nmodel: {source: m}\ndata: {labels: [a, b]}\n")
    with pytest.raises(ProtocolError, match="give exactly one of `files` or `splits`"):
        load_protocol(path)


def test_a_site_reads_only_its_own_files(federation: tuple[Path, dict[str, list[dict[str, str]]]]) -> None:
    protocol = federation[0]
    loaded, site = site_protocol(load_protocol(protocol), "south")
    assert loaded.protocol.federated is None
    assert [str(f) for f in loaded.protocol.data.files or []] == [str(f) for f in site.files]
    assert "sites/south/" in str(site.files[0])
    with pytest.raises(ProtocolError, match="no site 'west'"):
        site_protocol(load_protocol(protocol), "west")


def test_site_round_and_test_send_counts_weights_and_confusions_only(
    federation: tuple[Path, dict[str, list[dict[str, str]]]], tmp_path: Path
) -> None:
    protocol, rows = federation
    site = Site.open(protocol, "north", tmp_path / "north-work")
    summary = data_summary(site)
    assert {k: v["rows"] for k, v in summary["splits"].items()} == {"train": 90, "validation": 30, "test": 30}
    # north leans positive (70%): the counts say so, without a row.
    assert sum(v["labels"].get("pos", 0) for v in summary["splits"].values()) == 105
    texts = {r["text"] for r in rows["north"]}
    assert not any(t in repr(summary) for t in texts)

    start = trainable_arrays(site.model(None))
    new, metrics = local_round(site, start, 1, {"proximal-mu": 0.0})
    assert set(new) == set(start) and metrics["train_examples"] == 90
    assert any(not np.array_equal(new[k], start[k]) for k in start), "local training changed nothing"
    assert 0 <= metrics["global_val_accuracy"] <= 1

    # The same round with FedProx's proximal term stays closer to the global weights.
    prox, _ = local_round(site, start, 1, {"proximal-mu": 50.0})
    dist = lambda a: sum(float(((a[k] - start[k]) ** 2).sum()) for k in start)  # noqa: E731
    assert dist(prox) < dist(new)

    # A re-opened site (a new Flower process) reuses its prepared splits.
    again = Site.open(protocol, "north", tmp_path / "north-work")
    assert again.prepared.report["splits"] == site.prepared.report["splits"]

    test = site_test(site, new, 200)
    assert test["rows"] == 30 and test["replicates"].shape == (200, 2, 2)
    assert int(test["confusion"].sum()) == 30 and (test["replicates"].sum(axis=(1, 2)) == 30).all()


def test_lora_sends_only_the_adapters_and_the_head(
    federation: tuple[Path, dict[str, list[dict[str, str]]]], tmp_path: Path
) -> None:
    protocol = _rewrite(
        federation[0],
        "precision: fp32}",
        "precision: fp32, method: lora, lora: {r: 4, target_modules: [query, value]}}",
    )
    site = Site.open(protocol, "east", tmp_path / "east-work")
    model = site.model(None)
    arrays = trainable_arrays(model)
    assert arrays and all("lora_" in k or "classifier" in k for k in arrays)
    total = sum(p.numel() for p in model.parameters())
    assert sum(a.size for a in arrays.values()) < total / 4
    other = site.model(None)
    load_trainable(other, {k: v + 1 for k, v in arrays.items()})
    with pytest.raises(ValueError, match="do not fit"):
        load_trainable(other, {k: v for k, v in list(arrays.items())[1:]})


def test_pooled_replicates_are_the_site_stratified_bootstrap() -> None:
    rng = np.random.default_rng(0)
    tests = []
    for name, n, acc in (("a", 40, 0.9), ("b", 60, 0.6)):
        y = rng.integers(0, 2, n)
        pred = np.where(rng.random(n) < acc, y, 1 - y)
        reps = confusion_replicates(y, pred, 2, 2000, seed=len(name) + n)
        point = np.bincount(y * 2 + pred, minlength=4).reshape(2, 2)
        tests.append({"site": name, "rows": n, "confusion": point, "replicates": reps})
    out = site_and_pooled(tests, 0.95)
    a, b, pooled = out["sites"]["a"]["accuracy"], out["sites"]["b"]["accuracy"], out["pooled"]["accuracy"]
    correct = sum(int(np.trace(t["confusion"])) for t in tests)
    assert pooled["value"] == pytest.approx(correct / 100)
    # The pooled interval is narrower than the smaller site's, and the stratified-bootstrap standard
    # error matches the analytic one of a weighted sum of two independent proportions within 15%.
    assert pooled["high"] - pooled["low"] < a["high"] - a["low"]
    pa, pb = np.trace(tests[0]["confusion"]) / 40, np.trace(tests[1]["confusion"]) / 60
    se = np.sqrt((40 / 100) ** 2 * pa * (1 - pa) / 40 + (60 / 100) ** 2 * pb * (1 - pb) / 60)
    width = pooled["high"] - pooled["low"]
    assert width == pytest.approx(2 * 1.96 * se, rel=0.15)
    assert b["low"] < b["value"] < b["high"]
    # macro-F1 of a perfect confusion is 1, of one always predicting class 0 on balanced data 1/3.
    perfect, constant = np.array([[5, 0], [0, 5]]), np.array([[5, 0], [5, 0]])
    assert scores(perfect, perfect[None], 0.95)["macro_f1"]["value"] == 1.0
    assert scores(constant, constant[None], 0.95)["macro_f1"]["value"] == pytest.approx(1 / 3)


def test_the_site_floor_fails_when_one_site_is_below_it() -> None:
    metrics = {
        "sites": {
            "a": {"rows": 50, "accuracy": {"value": 0.9, "low": 0.82, "high": 0.96}},
            "b": {"rows": 50, "accuracy": {"value": 0.7, "low": 0.58, "high": 0.8}},
        },
        "pooled": {"rows": 100, "accuracy": {"value": 0.8, "low": 0.72, "high": 0.87}},
    }
    verdicts = judge(metrics, [SiteFloor(metric="accuracy", min=0.6)], [GateSpec(metric="accuracy", min=0.7)])
    assert [v["passed"] for v in verdicts] == [True, False, True]
    assert "site b" in verdicts[1]["gate"]


def _test_of(name: str, y: np.ndarray, fed: np.ndarray, alone: np.ndarray, samples: int) -> dict[str, object]:
    def conf(pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        point = np.bincount(y * 2 + pred, minlength=4).reshape(2, 2)
        return point, confusion_replicates(y, pred, 2, samples, seed=len(name))

    (c, r), (ac, ar) = conf(fed), conf(alone)
    return {
        "site": name,
        "rows": len(y),
        "confusion": c,
        "replicates": r,
        "alone_confusion": ac,
        "alone_replicates": ar,
    }


def test_beats_site_alone_is_a_paired_interval_per_site() -> None:
    rng = np.random.default_rng(3)
    y_a, y_b = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    # At site a the federated model fixes 40 of the alone model's errors and breaks none; at site b
    # both models make the same predictions but two, where the federated one is wrong.
    alone_a = np.where(np.arange(200) < 60, 1 - y_a, y_a)
    fed_a = np.where(np.arange(200) < 20, 1 - y_a, y_a)
    alone_b = np.where(np.arange(200) < 30, 1 - y_b, y_b)
    fed_b = np.where(np.arange(200) < 32, 1 - y_b, y_b)
    tests = [_test_of("a", y_a, fed_a, alone_a, 1000), _test_of("b", y_b, fed_b, alone_b, 1000)]
    metrics = site_and_pooled(tests, 0.95)
    vs = metrics["vs_alone"]
    assert vs["a"]["accuracy"]["diff"] == pytest.approx(0.2)
    assert vs["b"]["accuracy"]["diff"] == pytest.approx(-0.01)
    assert vs["pooled"]["accuracy"]["diff"] == pytest.approx((40 - 2) / 400)
    assert vs["a"]["alone"]["accuracy"]["value"] == pytest.approx(0.7)
    # Paired: the federated model is never worse at a, so no resample can show it worse; at b it
    # never better. The unpaired intervals of the two models at b overlap almost entirely.
    assert vs["a"]["accuracy"]["low"] > 0.1
    assert vs["b"]["accuracy"]["high"] <= 0
    verdicts = judge(metrics, [], [], BeatsAlone(metric="accuracy"))
    assert [(v["gate"].split()[-1], v["passed"]) for v in verdicts] == [("a", True), ("b", False)]
    # A margin larger than site a's lower bound fails it too.
    strict = judge(metrics, [], [], BeatsAlone(metric="accuracy", margin=0.3))
    assert not any(v["passed"] for v in strict)
    # A site that sent no scores of its own model cannot pass.
    tests[1] = {k: v for k, v in tests[1].items() if not k.startswith("alone")}
    partial = site_and_pooled(tests, 0.95)
    assert "vs_alone" not in partial
    assert not any(v["passed"] for v in judge(partial, [], [], BeatsAlone()))


def test_a_site_trains_its_model_alone_and_scores_both_on_the_same_resamples(
    tmp_path: Path, tiny_bert: Path
) -> None:
    protocol, _ = write_federation(
        tmp_path, tiny_bert, rounds=2, extra="  beats_site_alone: {metric: accuracy}\n"
    )
    fed = load_protocol(protocol).protocol.federated
    assert fed is not None and fed.beats_site_alone == BeatsAlone(metric="accuracy", margin=0.0)
    site = Site.open(protocol, "south", tmp_path / "south-work")
    start = trainable_arrays(site.model(None))
    alone = alone_arrays(site)
    assert set(alone) == set(start)
    assert any(not np.array_equal(alone[k], start[k]) for k in start), "training alone changed nothing"
    # Kept in the site's folder: a retried test step reads it back rather than training again.
    stored = tmp_path / "south-work" / "alone" / "weights.safetensors"
    assert stored.exists()
    again = alone_arrays(site)
    assert all(np.array_equal(again[k], alone[k]) for k in alone)
    # The same weights on both sides: identical confusions, so every paired difference is 0.
    same = site_test(site, alone, 200, alone)
    assert np.array_equal(same["alone_replicates"], same["replicates"])
    diff = site_and_pooled([same], 0.95)["vs_alone"]["south"]["accuracy"]
    assert diff == {"diff": 0.0, "low": 0.0, "high": 0.0}
    other = site_test(site, start, 200, alone)
    assert other["alone_replicates"].shape == other["replicates"].shape == (200, 2, 2)
    assert (other["alone_replicates"].sum(axis=(1, 2)) == other["rows"]).all()


def test_checkpoints_resume_from_the_newest_complete_round(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    w1, w2 = {"w": np.ones(3, np.float32)}, {"w": np.full(3, 2.0, np.float32)}
    save_round(folder, 1, w1, {})
    save_round(folder, 2, w2, {})
    latest = latest_round(folder)
    assert latest is not None and latest[0] == 2 and np.array_equal(latest[1]["w"], w2["w"])
    # A round killed while its weights were written (they no longer match their json) is skipped.
    (folder / "round-0002" / "global.safetensors").write_bytes(b"torn")
    latest = latest_round(folder)
    assert latest is not None and latest[0] == 1 and "round-0002" in latest[2][0]
    (folder / "round-0001" / "checkpoint.json").unlink()
    assert latest_round(folder) is None


def test_the_federated_example_validates_with_every_sites_data() -> None:
    from tuneproof.protocol.check import check_protocol

    example = Path(__file__).parents[2] / "examples" / "federated" / "reviews-3-sites.yaml"
    loaded, problems = check_protocol(example, read_data=True)
    assert loaded is not None and loaded.protocol.federated is not None
    assert [str(p) for p in problems] == []


def test_validate_names_the_site_whose_data_is_bad(
    federation: tuple[Path, dict[str, list[dict[str, str]]]], tmp_path: Path
) -> None:
    from tuneproof.protocol.check import check_protocol

    protocol = federation[0]
    bad = tmp_path / "sites" / "south" / "data" / "reviews.jsonl"
    bad.write_text(bad.read_text().replace('"label": "neg"', '"label": "meh"', 1))
    _, problems = check_protocol(protocol, read_data=True)
    assert problems and all(str(p).startswith("federated.sites[south]") for p in problems)
    assert any("meh" in str(p) for p in problems)
