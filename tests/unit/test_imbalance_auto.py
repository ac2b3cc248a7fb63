"""`imbalance.strategy: auto`: the decision and its reason, the loss it gives, and small-class warnings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tuneproof.protocol import parse_protocol
from tuneproof.protocol.schema import AUTO_RATIO, ImbalanceSpec
from tuneproof.train.imbalance_auto import class_weights, decide, imbalance_report, small_class_warnings


def test_auto_uses_class_weights_from_the_threshold_and_nothing_below() -> None:
    spec = ImbalanceSpec()
    assert spec.strategy == "auto" and spec.auto_ratio == AUTO_RATIO == 10.0
    below = decide(spec, "classification", {"a": 999, "b": 100})
    assert below["strategy"] == "none" and "below imbalance.auto_ratio 10" in below["reason"]
    at = decide(spec, "classification", {"a": 1000, "b": 100})
    assert at["strategy"] == "class_weights" and at["ratio"] == 10.0 and "10.0:1" in at["reason"]
    assert decide(spec, "multilabel", {"a": 900, "b": 10})["strategy"] == "none"
    assert decide(ImbalanceSpec(strategy="oversample"), "classification", {"a": 1, "b": 1})["strategy"] == (
        "oversample"
    )
    assert decide(ImbalanceSpec(auto_ratio=20), "classification", {"a": 190, "b": 10})["strategy"] == "none"


def test_auto_ratio_without_auto_is_refused() -> None:
    from tuneproof.errors import ProtocolError

    with pytest.raises(ProtocolError, match="auto_ratio only applies with strategy: auto"):
        parse_protocol(
            "name: t\nmodel: {source: m}\ndata: {files: [x.csv]}\n"
            "imbalance: {strategy: none, auto_ratio: 3}\n"
        )


def test_report_entry_carries_the_weights_the_loss_uses() -> None:
    protocol = parse_protocol("name: t\nmodel: {source: m}\ndata: {files: [x.csv]}\n")
    entry = imbalance_report(protocol, {"pos": 1000, "neg": 100})
    assert entry["requested"] == "auto" and entry["strategy"] == "class_weights"
    assert entry["class_weights"] == class_weights({"pos": 1000, "neg": 100}) == {"neg": 5.5, "pos": 0.55}
    assert imbalance_report(protocol, {"pos": 100, "neg": 100})["class_weights"] is None
    assert imbalance_report(protocol, None) == {"strategy": "none"}


def _task(tiny_bert: Path, extra: str = "") -> object:
    from tuneproof.tasks.registry import get_task

    protocol = parse_protocol(
        f"name: t\nmodel: {{source: {tiny_bert}}}\ndata: {{files: [x.csv], labels: [neg, pos]}}\n{extra}"
    )
    return get_task(protocol)


def _features(pos: int, neg: int) -> list[dict[str, object]]:
    rows = [{"row_id": f"p{i}", "labels": 1} for i in range(pos)]
    return rows + [{"row_id": f"n{i}", "labels": 0} for i in range(neg)]


class _Logits(torch.nn.Module):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> object:
        class Out:
            logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])

        return Out()


@pytest.mark.parametrize(("pos", "neg", "weighted"), [(80, 20, False), (110, 10, True)])
def test_the_loss_is_weighted_only_past_the_threshold(
    tiny_bert: Path, pos: int, neg: int, weighted: bool
) -> None:
    task = _task(tiny_bert)
    feats = _features(pos, neg)
    assert task.imbalance_strategy(feats) == ("class_weights" if weighted else "none")  # type: ignore[attr-defined]
    batch = {
        "input_ids": torch.zeros(2, 3),
        "attention_mask": torch.ones(2, 3),
        "labels": torch.tensor([0, 1]),
    }
    total, count = task.loss_fn(feats)(_Logits(), batch)  # type: ignore[attr-defined]
    plain = torch.nn.functional.cross_entropy(
        torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1]), reduction="none"
    )
    if weighted:  # n / (k * count): label id 0 is neg, 1 is pos
        expected = plain[0] * (pos + neg) / (2 * neg) + plain[1] * (pos + neg) / (2 * pos)
    else:
        expected = plain.sum()
    assert count == 2 and float(total) == pytest.approx(float(expected), rel=1e-5)
    # The same decision with oversampled copies present: they are not counted.
    copies = [{"row_id": f"n{i}#dup", "labels": 0} for i in range(pos - neg)]
    assert task.imbalance_strategy(feats + copies) == task.imbalance_strategy(feats)  # type: ignore[attr-defined]


def test_small_classes_are_named_with_what_they_cannot_support() -> None:
    warnings = small_class_warnings({"train": {"a": 500, "b": 12}, "test": {"a": 80, "b": 4}})
    got = {(w["split"], w["label"], w["problem"]) for w in warnings}
    assert got == {("train", "b", "learn"), ("test", "b", "measure")}
    test_b = next(w for w in warnings if w["split"] == "test")
    assert test_b["rows"] == 4 and "±0.49" in test_b["text"]
    assert small_class_warnings({"train": {"a": 30, "b": 30}, "test": {"a": 30, "b": 30}}) == []
