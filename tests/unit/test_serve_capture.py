"""Capture never writes personal data: not from the input, and not from a generated reply."""

from __future__ import annotations

import json
from pathlib import Path

from tuneproof.data.pii import PiiSpec
from tuneproof.serve.capture import CaptureWriter
from tuneproof.serve.metrics import ServeMetrics
from tuneproof.serve.settings import Capture


def _records(folder: Path) -> list[dict]:
    return [
        json.loads(line)
        for f in sorted(folder.glob("capture-*.jsonl"))
        for line in f.read_text().splitlines()
    ]


def test_a_generated_reply_is_scrubbed_before_it_is_written(tmp_path: Path) -> None:
    metrics = ServeMetrics()
    writer = CaptureWriter(Capture(folder=tmp_path / "cap"), PiiSpec(), metrics, "sft", "run-1")
    writer.submit(
        "/v1/chat/completions",
        "req-1",
        ["who wrote to me?"],
        [{"generation": "it was jane.doe@example.com, call +44 20 7946 0958"}],
    )
    writer.close()
    (record,) = _records(tmp_path / "cap")
    reply = record["prediction"]["generation"]
    assert "jane.doe@example.com" not in reply and "EMAIL_ADDRESS" in reply
    assert record["text"] == "who wrote to me?" and record["pii"] == "scrubbed"


def test_under_a_fail_policy_a_reply_with_personal_data_is_dropped_and_counted(tmp_path: Path) -> None:
    metrics = ServeMetrics()
    spec = PiiSpec(entities={"EMAIL_ADDRESS": "fail"})
    writer = CaptureWriter(Capture(folder=tmp_path / "cap"), spec, metrics, "sft", "run-1")
    writer.submit("/v1/chat/completions", "r", ["hello"], [{"generation": "mail bob@example.org"}])
    writer.submit("/v1/chat/completions", "s", ["hello"], [{"generation": "no address here"}])
    writer.close()
    records = _records(tmp_path / "cap")
    assert [r["prediction"]["generation"] for r in records] == ["no address here"]
    assert b'reason="pii"} 1.0' in metrics.render()
