"""The PII step: policies, keyed pseudonyms, fail, min_score, the report, and accuracy floors on a
fixture of seeded texts with known answers (tests/fixtures/pii_fixture.jsonl)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tuneproof.data.pii import (
    ENTITY_TYPES,
    PiiSpec,
    detect,
    key_from_env,
    pseudonym,
    scan_report,
    scrub,
)
from tuneproof.errors import PersonalDataFound

FIXTURE = Path(__file__).parents[1] / "fixtures" / "pii_fixture.jsonl"

# Floors at the default min_score (0.5) on the whole fixture, a little under what was measured
# (docs/pii.md has the measured figures). PERSON has a floor per detector: the name heuristics alone
# (measured R 0.81, P 0.97) and, by default, the spaCy NER model with them (R 0.94, P 0.92).
RECALL_FLOOR = {
    "EMAIL_ADDRESS": 0.9,
    "PHONE_NUMBER": 0.9,
    "CREDIT_CARD": 0.85,
    "IBAN_CODE": 0.9,
    "IP_ADDRESS": 0.9,
    "URL": 0.85,
    "US_SSN": 0.8,
    "DATE_OF_BIRTH": 0.85,
    "PERSON": 0.88,
}
PRECISION_FLOOR = {
    "EMAIL_ADDRESS": 0.9,
    "PHONE_NUMBER": 0.9,
    "CREDIT_CARD": 0.9,
    "IBAN_CODE": 0.9,
    "IP_ADDRESS": 0.9,
    "URL": 0.9,
    "US_SSN": 0.8,
    "DATE_OF_BIRTH": 0.85,
    "PERSON": 0.86,
}
HEURISTIC_PERSON_FLOOR = {"recall": 0.75, "precision": 0.9}

KEY = b"test-key-1"
EMAIL = "jane.doe@example.com"
PHONE = "+1 415-555-0132"


def _spec(**entities: str) -> PiiSpec:
    return PiiSpec.model_validate({"entities": entities})


def _ids(n: int) -> list[str]:
    return [f"r{i}" for i in range(n)]


@pytest.fixture(scope="module")
def fixture_rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def fixture_detections(fixture_rows: list[dict[str, Any]]) -> list[list[Any]]:
    return detect([r["text"] for r in fixture_rows], PiiSpec())


# --- the spec ----------------------------------------------------------------------------------------


def test_spec_defaults_redact_every_type() -> None:
    spec = PiiSpec()
    assert spec.fields == ["text"]
    assert spec.entities == dict.fromkeys(ENTITY_TYPES, "redact")
    assert spec.min_score == 0.5
    assert spec.secret_env == "TUNEPROOF_PII_SECRET"


@pytest.mark.parametrize(
    "bad",
    [
        {"entities": {"EMAIL_ADDRESS": "delete"}},
        {"entities": {"PASSPORT": "redact"}},
        {"entities": {}},
        {"fields": []},
        {"fields": ["text", "text"]},
        {"min_score": 1.5},
        {"secret_env": "not a name"},
        {"unknown": 1},
    ],
)
def test_spec_rejects_invalid(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        PiiSpec(**bad)


def test_spec_is_frozen() -> None:
    with pytest.raises(ValidationError):
        PiiSpec().min_score = 0.1


# --- policies ----------------------------------------------------------------------------------------


def test_redact_replaces_with_typed_placeholders_and_rescans() -> None:
    texts = [f"Mail {EMAIL} or call {PHONE}.", "Nothing personal here."]
    res = scrub(texts, _ids(2), "text", PiiSpec(), KEY)
    assert res.texts == ["Mail <EMAIL_ADDRESS> or call <PHONE_NUMBER>.", "Nothing personal here."]
    assert res.found["EMAIL_ADDRESS"] == 1 and res.found["PHONE_NUMBER"] == 1
    assert sum(res.remaining.values()) == 0
    assert res.examples["EMAIL_ADDRESS"] == ["Mail <EMAIL_ADDRESS> or call <PHONE_NUMBER>."]


def test_pseudonyms_are_stable_within_a_key_and_differ_across_keys() -> None:
    texts = [f"from {EMAIL}", f"again {EMAIL.upper()}", "other b.smith@example.org"]
    spec = _spec(EMAIL_ADDRESS="pseudonymise")
    a = scrub(texts, _ids(3), "text", spec, KEY).texts
    b = scrub(texts, _ids(3), "text", spec, b"another key").texts
    surrogate = re.compile(r"<EMAIL_ADDRESS_[0-9a-f]{8}>")
    first = [surrogate.search(t).group() for t in a]  # type: ignore[union-attr]
    assert first[0] == first[1] != first[2]  # case does not make a different address
    assert first[0] == pseudonym(KEY, "EMAIL_ADDRESS", EMAIL)
    assert a != b
    assert all(EMAIL not in t.lower() for t in a + b)


def test_pseudonym_separates_types() -> None:
    assert pseudonym(KEY, "PERSON", "Ada") != pseudonym(KEY, "URL", "Ada")


def test_report_keeps_text_but_never_shows_the_value() -> None:
    texts = [f"write to {EMAIL} today"]
    res = scrub(texts, _ids(1), "notes", _spec(EMAIL_ADDRESS="report"), KEY)
    assert res.texts == texts
    assert res.found == res.remaining == {"EMAIL_ADDRESS": 1}
    assert res.examples == {"EMAIL_ADDRESS": ["write to <EMAIL_ADDRESS> today"]}
    assert EMAIL not in json.dumps(scan_report([res]))


def test_policies_mix_per_type() -> None:
    text = f"Dr. Ada Obi paid with 4111 1111 1111 1111, mail {EMAIL}"
    spec = _spec(PERSON="report", CREDIT_CARD="pseudonymise", EMAIL_ADDRESS="redact")
    res = scrub([text], _ids(1), "text", spec, KEY)
    assert re.fullmatch(
        r"Dr\. Ada Obi paid with <CREDIT_CARD_[0-9a-f]{8}>, mail <EMAIL_ADDRESS>", res.texts[0]
    )
    assert res.remaining == {"EMAIL_ADDRESS": 0, "CREDIT_CARD": 0, "PERSON": 1}
    assert "Ada" not in json.dumps(scan_report([res]))


def test_fail_collects_every_row_then_raises_once() -> None:
    texts = [f"row {i} {EMAIL}" if i % 2 else "clean" for i in range(16)]
    spec = _spec(EMAIL_ADDRESS="fail", PHONE_NUMBER="redact")
    with pytest.raises(PersonalDataFound) as err:
        scrub(texts, _ids(16), "comment", spec, KEY)
    msg = str(err.value)
    assert "'comment'" in msg and "EMAIL_ADDRESS" in msg
    assert "8 row(s): r1, r3, r5, r7, r9 and 3 more" in msg
    assert EMAIL not in msg


def test_fail_passes_when_nothing_is_found() -> None:
    res = scrub(["all clear"], _ids(1), "text", _spec(EMAIL_ADDRESS="fail"), KEY)
    assert res.texts == ["all clear"] and res.found == {"EMAIL_ADDRESS": 0}


def test_row_ids_must_match_texts() -> None:
    with pytest.raises(ValueError, match="row ids"):
        scrub(["a", "b"], ["r0"], "text", PiiSpec(), KEY)


# --- min_score and validators ---------------------------------------------------------------------


def test_min_score_filters_weak_detections() -> None:
    # With the heuristics alone, a known first name alone scores 0.4; a date with no birth word 0.2.
    texts = ["Maria was here.", "Shipped on 03/04/2021."]
    entities = {"PERSON": "redact", "DATE_OF_BIRTH": "redact"}
    strict = detect(texts, PiiSpec(entities=entities, person_detector="heuristic"))
    assert strict == [[], []]
    loose = detect(texts, PiiSpec(entities=entities, min_score=0.1, person_detector="heuristic"))
    assert [[d.entity_type for d in row] for row in loose] == [["PERSON"], ["DATE_OF_BIRTH"]]


def test_checksums_and_birth_context_decide() -> None:
    texts = [
        "card 4111 1111 1111 1111",
        "card 4111 1111 1111 1112",
        "IBAN GB82 WEST 1234 5698 7654 32",
        "IBAN GB82 WEST 1234 5698 7654 33",
        "born on 03/04/1985",
        "delivered on 03/04/1985",
    ]
    found = [[d.entity_type for d in row] for row in detect(texts, PiiSpec())]
    assert found == [["CREDIT_CARD"], [], ["IBAN_CODE"], [], ["DATE_OF_BIRTH"], []]


# --- the report ------------------------------------------------------------------------------------


def test_scan_report_is_json_and_names_limitations() -> None:
    spec = _spec(EMAIL_ADDRESS="redact", PERSON="pseudonymise")
    a = scrub([f"Dear Maria, {EMAIL}"], _ids(1), "text", spec, KEY)
    b = scrub(["nothing"], _ids(1), "title", spec, KEY)
    report = json.loads(json.dumps(scan_report([a, b])))
    assert report["policy"] == {"EMAIL_ADDRESS": "redact", "PERSON": "pseudonymise"}
    assert report["min_score"] == 0.5
    assert report["fields"]["text"]["found"] == {"EMAIL_ADDRESS": 1, "PERSON": 1}
    assert report["fields"]["title"]["remaining"] == {"EMAIL_ADDRESS": 0, "PERSON": 0}
    assert re.fullmatch(r"Dear <PERSON_[0-9a-f]{8}>, <EMAIL_ADDRESS>", report["examples"]["PERSON"][0])
    notes = " ".join(report["limitations"])
    assert "PERSON" in notes and "NER" in notes
    assert "Not scanned" in notes and "CREDIT_CARD" in notes
    assert "not a guarantee" in notes


def test_examples_are_capped_at_five_per_type() -> None:
    texts = [f"user{i}@example.com wrote" for i in range(9)]
    res = scrub(texts, _ids(9), "text", _spec(EMAIL_ADDRESS="redact"), KEY)
    assert len(res.examples["EMAIL_ADDRESS"]) == 5
    assert len(scan_report([res, res])["examples"]["EMAIL_ADDRESS"]) == 5


def test_key_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = PiiSpec(secret_env="TP_TEST_PII_KEY")
    monkeypatch.setenv("TP_TEST_PII_KEY", "s3cret")
    assert key_from_env(spec) == b"s3cret"
    monkeypatch.delenv("TP_TEST_PII_KEY")
    k1, k2 = key_from_env(spec), key_from_env(spec)
    assert len(k1) == 32 and k1 != k2


def test_importing_builds_nothing() -> None:
    heavy = "'presidio_analyzer' in sys.modules or 'spacy' in sys.modules"
    code = f"import sys, tuneproof.data.pii; sys.exit({heavy})"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --- the fixture -----------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["redact", "pseudonymise"])
def test_no_detected_value_survives(
    policy: str, fixture_rows: list[dict[str, Any]], fixture_detections: list[list[Any]]
) -> None:
    texts = [r["text"] for r in fixture_rows]
    spec = PiiSpec.model_validate({"entities": dict.fromkeys(ENTITY_TYPES, policy)})
    res = scrub(texts, _ids(len(texts)), "text", spec, KEY)
    report = json.dumps(scan_report([res]), ensure_ascii=False)
    for text, out, dets in zip(texts, res.texts, fixture_detections, strict=True):
        undetected = text
        for d in dets:  # what is left of the row once the detected spans are blanked out
            undetected = undetected[: d.start] + "\0" * (d.end - d.start) + undetected[d.end :]
        for d in dets:
            value = text[d.start : d.end]
            if value in undetected:  # the same characters also occur where nothing was detected
                continue
            assert value not in out, (value, out)
            if len(value) >= 8:  # short ones (a first name) may occur in unrelated example text
                assert value not in report, value


def _score(rows: list[dict[str, Any]], detections: list[list[Any]]) -> tuple[Counter[str], ...]:
    """A detection is right when it overlaps a labelled value of the same type (each used once)."""
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    for row, dets in zip(rows, detections, strict=True):
        gold = []
        for e in row["entities"]:
            start = row["text"].index(e["value"])
            gold.append([e["type"], start, start + len(e["value"]), False])
        for d in dets:
            hit = next(
                (g for g in gold if not g[3] and g[0] == d.entity_type and d.start < g[2] and g[1] < d.end),
                None,
            )
            if hit:
                hit[3] = True
                tp[d.entity_type] += 1
            else:
                fp[d.entity_type] += 1
        for g in gold:
            if not g[3]:
                fn[g[0]] += 1
    return tp, fp, fn


@pytest.mark.parametrize("entity_type", ENTITY_TYPES)
def test_precision_and_recall_floors(
    entity_type: str, fixture_rows: list[dict[str, Any]], fixture_detections: list[list[Any]]
) -> None:
    tp, fp, fn = _score(fixture_rows, fixture_detections)
    labelled = tp[entity_type] + fn[entity_type]
    assert labelled >= 5, f"fixture has too few {entity_type} examples to measure"
    recall = tp[entity_type] / labelled
    precision = tp[entity_type] / max(1, tp[entity_type] + fp[entity_type])
    assert recall >= RECALL_FLOOR[entity_type], f"{entity_type} recall {recall:.2f}"
    assert precision >= PRECISION_FLOOR[entity_type], f"{entity_type} precision {precision:.2f}"


def test_heuristic_person_floors_without_the_model(fixture_rows: list[dict[str, Any]]) -> None:
    spec = PiiSpec(person_detector="heuristic")
    tp, fp, fn = _score(fixture_rows, detect([r["text"] for r in fixture_rows], spec))
    recall = tp["PERSON"] / (tp["PERSON"] + fn["PERSON"])
    precision = tp["PERSON"] / max(1, tp["PERSON"] + fp["PERSON"])
    assert recall >= HEURISTIC_PERSON_FLOOR["recall"], f"heuristic PERSON recall {recall:.2f}"
    assert precision >= HEURISTIC_PERSON_FLOOR["precision"], f"heuristic PERSON precision {precision:.2f}"
