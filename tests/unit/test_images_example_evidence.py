"""The images example's claim, "beats the linear probe with confidence", rests on its one measured run
(17.5 min on 2 cores: too long for a test), kept in benchmarks/results/. This checks that the record
is of the example as it stands: the same gates, all passed, the linear-probe gate on the lower bound
of the paired interval above 0, and the same schedule (steps = ceil(train rows / batch) x epochs).
Editing the example's gates, batch size or epochs without measuring it again fails here."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from tuneproof.protocol import load_protocol
from tuneproof.protocol.schema import GateSpec

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "results"


def test_the_recorded_example_run_is_of_the_example_as_shipped_and_beat_the_linear_probe() -> None:
    protocol = load_protocol(REPO / "examples" / "fashion-mnist-images.yaml").protocol
    record = json.loads((RESULTS / "fashion_mnist_images_example_gates.json").read_text())
    log = (RESULTS / "fashion_mnist_images_example.log").read_text()
    assert record["passed"] is True and all(v["passed"] for v in record["verdicts"])

    def key(g: GateSpec) -> tuple[str, str, str | None, float]:
        if g.beats is not None:
            return (g.metric, "beats", g.beats, g.by)
        if g.min is not None:
            return (g.metric, "min", None, g.min)
        assert g.max is not None, "the example has only min, max and beats gates"
        return (g.metric, "max", None, g.max)

    shipped = sorted(key(g) for g in protocol.gates)
    recorded = sorted(
        (v["metric"], v["kind"], v.get("baseline"), float(v["threshold"])) for v in record["verdicts"]
    )
    assert shipped == recorded
    probe = next(v for v in record["verdicts"] if v.get("baseline") == "linear_probe")
    assert probe["low"] > 0 and "paired" in probe["decided_on"]

    train_rows = int(re.search(r"\[prepare\] train=(\d+)", log).group(1))  # type: ignore[union-attr]
    steps = int(re.findall(r"\[train\] step \d+/(\d+)", log)[-1])
    assert steps == math.ceil(train_rows / protocol.train.batch_size) * protocol.train.epochs
