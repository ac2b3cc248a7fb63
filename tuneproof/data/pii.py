"""The personal-data (PII) step of the data stage: find, then report, redact, pseudonymise or refuse.

Detection is Microsoft Presidio's ``AnalyzerEngine`` (its pattern and checksum recognizers for e-mail,
phone, card, IBAN, IP, URL and SSN) with the offline pieces from ``pii_recognizers`` (a birth-date
recognizer, a heuristic name recognizer) and, where the verified spaCy model is installed, the
statistical NER recognizer from ``pii_ner``; replacement is Presidio's ``AnonymizerEngine``. The
analyzer is built on the first call to ``scrub``, never at import.

Nothing this module returns holds a detected value: outputs carry placeholders or keyed surrogates,
examples are cut from redacted text, and the pseudonymisation key lives only in the caller's memory.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tuneproof.errors import PersonalDataFound, Problem, ProtocolError

log = logging.getLogger(__name__)

EntityType = Literal[
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "URL",
    "US_SSN",
    "DATE_OF_BIRTH",
    "PERSON",
]
Policy = Literal["report", "redact", "pseudonymise", "fail"]
# auto: the spaCy NER model together with the name heuristics when the model is installed and
# verified, the heuristics alone (and the report says so) when it is not; ner: the model is required.
PersonDetector = Literal["auto", "ner", "heuristic"]
ENTITY_TYPES: tuple[str, ...] = get_args(EntityType)

MAX_EXAMPLES = 5
_EXAMPLE_CONTEXT = 40  # characters of output text kept either side of a placeholder in an example
_FAIL_ROWS_SHOWN = 5


def _redact_everything() -> dict[EntityType, Policy]:
    return dict.fromkeys(get_args(EntityType), "redact")


class PiiSpec(BaseModel):
    """The protocol's ``pii:`` section.

    Only the entity types listed in ``entities`` are scanned; the report names the ones left out.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fields: list[str] = Field(default_factory=lambda: ["text"], min_length=1)
    entities: dict[EntityType, Policy] = Field(default_factory=_redact_everything, min_length=1)
    min_score: float = Field(default=0.5, ge=0.0, le=1.0)
    secret_env: str = Field(default="TUNEPROOF_PII_SECRET", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    on_inputs: bool = Field(
        default=False, description="also scrub `predict` and `serve` inputs before the model sees them"
    )
    person_detector: PersonDetector = "auto"

    @field_validator("fields")
    @classmethod
    def _unique_fields(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v) or any(not f for f in v):
            raise ValueError("fields must be distinct, non-empty column names")
        return v


@dataclass(frozen=True)
class PiiFieldResult:
    """What ``scrub`` did to one text column. ``texts`` is the new column; nothing else holds text
    that was not first redacted."""

    field: str
    texts: list[str]
    policy: dict[str, str]
    min_score: float
    found: dict[str, int]
    remaining: dict[str, int]
    examples: dict[str, list[str]]
    limitations: list[str]
    detector: dict[str, Any] = dc_field(default_factory=dict)  # what found names: see detector_info


def key_from_env(spec: PiiSpec) -> bytes:
    """The pseudonymisation key: the value of ``spec.secret_env``, or a fresh random key for this run.

    The key is only ever returned, never logged or written; with a random key the surrogates are
    stable within the run but cannot be linked to those of another run.
    """
    value = os.environ.get(spec.secret_env)
    if value:
        return value.encode("utf-8")
    log.warning(
        "%s is not set: pseudonyms use a random per-run key and will differ between runs", spec.secret_env
    )
    return secrets.token_bytes(32)


def pseudonym(key: bytes, entity_type: str, value: str) -> str:
    """``<TYPE_xxxxxxxx>``: the first 8 hex digits of HMAC-SHA256(key, type + NUL + normalised value).

    The NUL keeps ("AB", "C") and ("A", "BC") apart; normalising makes "+44 20 7946 0958" and
    "+442079460958" one surrogate, since they are one number. 32 bits can collide across very many
    distinct values; a collision merges two surrogates but never reveals a value.
    """
    msg = f"{entity_type}\x00{_normalise(entity_type, value)}".encode()
    return f"<{entity_type}_{hmac.new(key, msg, hashlib.sha256).hexdigest()[:8]}>"


_SEPARATORS = re.compile(r"[\s\-./()]+")


def _normalise(entity_type: str, value: str) -> str:
    if entity_type in ("CREDIT_CARD", "IBAN_CODE", "PHONE_NUMBER", "US_SSN"):
        return _SEPARATORS.sub("", value).upper()
    if entity_type in ("EMAIL_ADDRESS", "URL", "PERSON"):
        return " ".join(value.split()).casefold()
    return value.strip()


# ---------------------------------------------------------------------------------------------------
# The engines, built once per process


@dataclass(frozen=True)
class _Engines:
    analyzer: Any
    anonymizer: Any
    limitations: dict[str, str]  # entity type -> what is degraded about its detection
    person_detector: str  # "ner+heuristic" or "heuristic": what actually ran
    ner_model: dict[str, str] | None  # the verified model's package, version, licence


@functools.cache
def _engines(person_detector: str = "auto") -> _Engines:
    return build_engines(person_detector)


def build_engines(person_detector: str = "auto", ner_pipes: tuple[str, ...] | None = None) -> _Engines:
    """Build the analyzer and anonymizer (uncached; ``_engines`` caches one per process).

    ``ner_pipes`` overrides which spaCy components run (benchmarks/pii_names.py compares the full
    pipeline with the default ``tok2vec`` + ``ner``).
    """
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        IbanRecognizer,
        IpRecognizer,
        UsSsnRecognizer,
    )
    from presidio_anonymizer import AnonymizerEngine

    from tuneproof.data import pii_ner
    from tuneproof.data import pii_recognizers as r

    info: pii_ner.ModelInfo | None = None
    unavailable = ""
    if person_detector != "heuristic":
        try:
            info = pii_ner.verify_model()
        except pii_ner.ModelCheckFailed as err:
            if person_detector == "ner":
                raise ProtocolError(
                    [Problem("pii.person_detector", f"'ner' needs the spaCy NER model: {err}")]
                ) from err
            unavailable = str(err)
            log.warning("PII: no statistical NER model (%s); names are found by heuristics only", err)
    recognizers = [
        r.OfflineEmailRecognizer(),
        r.ValidatedPhoneRecognizer(),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        r.FileAwareUrlRecognizer(),
        UsSsnRecognizer(),
        r.DateOfBirthRecognizer(),
        # Kept next to the model: it finds names after titles and cues that the small model misses
        # (measured in docs/pii.md), and it is the whole of PERSON detection without the model.
        r.PersonNameRecognizer(),
    ]
    nlp_engine: Any
    if info is not None:
        lists = r.name_lists()
        known = (lists[0] | lists[1]) - r.ambiguous_first_names() if lists else frozenset()
        recognizers.append(pii_ner.NerPersonRecognizer(known))
        nlp_engine = pii_ner.VerifiedSpacyNlpEngine(info, ner_pipes or pii_ner.KEPT_PIPES)
    else:
        nlp_engine = r.BlankEnglishNlpEngine()
    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=["en"])
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])
    if info is not None:
        person_note = pii_ner.ner_limitation(info)
    else:
        person_note = r.PERSON_LIMITATION if r.name_lists() else r.PERSON_LIMITATION_NO_FAKER
        if unavailable:
            person_note = f"The statistical NER model was not used ({unavailable}). " + person_note
    limitations = {
        "PERSON": person_note,
        "DATE_OF_BIRTH": (
            "DATE_OF_BIRTH counts full dates (numeric, ISO, or with a month name) only when a birth "
            "word (born, birth, DOB, birthday) is among the five words before them."
        ),
        "PHONE_NUMBER": (
            "PHONE_NUMBER uses libphonenumber for the regions US, GB, DE, FR, IL, IN, CA and BR, plus "
            "any number written in international +CC form."
        ),
        "US_SSN": (
            "US_SSN counts only the dashed or spaced 3-2-4 form unless 'SSN'/'social security' is near."
        ),
    }
    return _Engines(
        analyzer=analyzer,
        anonymizer=AnonymizerEngine(),
        limitations=limitations,
        person_detector="ner+heuristic" if info is not None else "heuristic",
        ner_model=(
            {"package": info.package, "version": info.version, "license": info.license}
            if info is not None
            else None
        ),
    )


def detector_info(spec: PiiSpec) -> dict[str, Any]:
    """What finds names for ``spec``: ``{"person_detector": ..., "ner_model": {...} | None}``."""
    eng = _engines(spec.person_detector)
    return {"person_detector": eng.person_detector, "ner_model": eng.ner_model}


def warm_up(spec: PiiSpec | None = None) -> None:
    """Build the engines now (e.g. before timing a run) instead of on the first ``scrub``."""
    _engines((spec or PiiSpec()).person_detector)


@dataclass(frozen=True)
class Detection:
    """Where a value was found; the value itself is the caller's ``text[start:end]``."""

    entity_type: str
    start: int
    end: int
    score: float


def detect(texts: Sequence[str], spec: PiiSpec) -> list[list[Detection]]:
    """The detections ``scrub`` would act on, per text: the types in ``spec``, at or above
    ``spec.min_score``, overlaps resolved. For evaluation and debugging; changes nothing."""
    entities: list[str] = [t for t in ENTITY_TYPES if t in spec.entities]
    return [
        [Detection(d.entity_type, d.start, d.end, float(d.score)) for d in dets]
        for dets in _analyze(texts, entities, spec.min_score, spec.person_detector)
    ]


def _analyze(
    texts: Sequence[str], entities: list[str], min_score: float, person_detector: str
) -> list[list[Any]]:
    return analyze_with(_engines(person_detector), texts, entities, min_score)


def analyze_with(
    eng: _Engines, texts: Sequence[str], entities: list[str], min_score: float
) -> list[list[Any]]:
    """Presidio's results per text from the given engines, overlaps resolved."""
    out: list[list[Any]] = []
    for text, artifacts in eng.analyzer.nlp_engine.process_batch(texts, language="en"):
        found = eng.analyzer.analyze(
            text=text,
            language="en",
            entities=entities,
            score_threshold=min_score,
            nlp_artifacts=artifacts,
        )
        out.append(_without_overlaps(found))
    return out


# On a tie, the type whose format is more specific wins: "078-12-4431" is shaped like an SSN and only
# happens to be a valid phone number too.
_PRIORITY = {
    t: i
    for i, t in enumerate(
        (
            "EMAIL_ADDRESS",
            "IBAN_CODE",
            "CREDIT_CARD",
            "US_SSN",
            "DATE_OF_BIRTH",
            "IP_ADDRESS",
            "URL",
            "PHONE_NUMBER",
            "PERSON",
        )
    )
}


def _without_overlaps(results: list[Any]) -> list[Any]:
    """One label per character: the most confident detection wins, then the longer one, then the
    more specific type.

    Presidio's recognizers overlap (a URL inside an e-mail, a phone number inside a card number);
    counting both would double-count one value.
    """
    kept: list[Any] = []
    order = sorted(
        results, key=lambda x: (-x.score, -(x.end - x.start), _PRIORITY.get(x.entity_type, 99), x.start)
    )
    for res in order:
        if all(res.end <= k.start or res.start >= k.end for k in kept):
            kept.append(res)
    return sorted(kept, key=lambda x: x.start)


# ---------------------------------------------------------------------------------------------------
# scrub


def scrub(
    texts: Sequence[str], row_ids: Sequence[str], field: str, spec: PiiSpec, key: bytes
) -> PiiFieldResult:
    """Scan one text column and apply ``spec``'s policy per entity type.

    Raises ``PersonalDataFound`` once, after the whole column was scanned, if any type whose policy
    is ``fail`` was found; the message names the field, the types and the first row ids.
    """
    if len(texts) != len(row_ids):
        raise ValueError(f"{len(texts)} texts but {len(row_ids)} row ids for field {field!r}")
    policy: dict[str, str] = {str(t): str(p) for t, p in spec.entities.items()}
    entities = [t for t in ENTITY_TYPES if t in policy]
    detections = _analyze(texts, entities, spec.min_score, spec.person_detector)

    found = dict.fromkeys(entities, 0)
    fail_rows: dict[str, list[str]] = {}
    for row_id, dets in zip(row_ids, detections, strict=True):
        for d in dets:
            found[d.entity_type] += 1
            if policy[d.entity_type] == "fail":
                rows = fail_rows.setdefault(d.entity_type, [])
                if not rows or rows[-1] != row_id:
                    rows.append(row_id)
    if fail_rows:
        raise PersonalDataFound(_fail_message(field, fail_rows))

    operators = _operators(policy, key)
    display_operators = _operators({t: "redact" if p == "report" else p for t, p in policy.items()}, key)
    anonymizer = _engines(spec.person_detector).anonymizer
    new_texts: list[str] = []
    examples: dict[str, list[str]] = {t: [] for t in entities}
    rescan: list[int] = []
    for i, (text, dets) in enumerate(zip(texts, detections, strict=True)):
        if not dets:
            new_texts.append(text)
            continue
        out = anonymizer.anonymize(
            text=text, analyzer_results=dets, operators=operators, merge_entities_with_spaces=False
        )
        new_texts.append(out.text)
        if any(policy[d.entity_type] != "report" for d in dets):
            rescan.append(i)
        if any(len(examples[d.entity_type]) < MAX_EXAMPLES for d in dets):
            # Examples come from a rendering where `report` types are redacted too, so a reported
            # value never reaches the data report.
            shown = out
            if any(policy[d.entity_type] == "report" for d in dets):
                shown = anonymizer.anonymize(
                    text=text,
                    analyzer_results=dets,
                    operators=display_operators,
                    merge_entities_with_spaces=False,
                )
            _add_examples(examples, shown.text, shown.items)

    remaining = _remaining(new_texts, detections, rescan, entities, spec.min_score, spec.person_detector)
    return PiiFieldResult(
        field=field,
        texts=new_texts,
        policy={t: policy[t] for t in entities},
        min_score=spec.min_score,
        found=found,
        remaining=remaining,
        examples={t: ex for t, ex in examples.items() if ex},
        limitations=_limitations(entities, spec.person_detector),
        detector=detector_info(spec) if "PERSON" in entities else {},
    )


def _operators(policy: dict[str, str], key: bytes) -> dict[str, Any]:
    from presidio_anonymizer.entities import OperatorConfig

    def surrogate(entity_type: str) -> Callable[[str], str]:
        return lambda value: pseudonym(key, entity_type, value)

    ops: dict[str, Any] = {}
    for entity_type, p in policy.items():
        if p == "redact":
            ops[entity_type] = OperatorConfig("replace", {"new_value": f"<{entity_type}>"})
        elif p == "pseudonymise":
            ops[entity_type] = OperatorConfig("custom", {"lambda": surrogate(entity_type)})
        else:  # report (fail never gets here: it raised or found nothing)
            ops[entity_type] = OperatorConfig("keep")
    return ops


def _add_examples(examples: dict[str, list[str]], text: str, items: Sequence[Any]) -> None:
    for item in sorted(items, key=lambda x: x.start):
        bucket = examples[item.entity_type]
        if len(bucket) >= MAX_EXAMPLES:
            continue
        start, end = max(0, item.start - _EXAMPLE_CONTEXT), min(len(text), item.end + _EXAMPLE_CONTEXT)
        snippet = " ".join(text[start:end].split())
        bucket.append(("…" if start else "") + snippet + ("…" if end < len(text) else ""))


def _remaining(
    new_texts: list[str],
    detections: list[list[Any]],
    rescan: list[int],
    entities: list[str],
    min_score: float,
    person_detector: str,
) -> dict[str, int]:
    """Re-scan what changed; a text left as it was (no hit, or only `report` hits) keeps its count."""
    remaining = dict.fromkeys(entities, 0)
    changed = set(rescan)
    for i, dets in enumerate(detections):
        if i not in changed:
            for d in dets:
                remaining[d.entity_type] += 1
    for dets in _analyze([new_texts[i] for i in rescan], entities, min_score, person_detector):
        for d in dets:
            remaining[d.entity_type] += 1
    return remaining


def _fail_message(field: str, fail_rows: dict[str, list[str]]) -> str:
    parts = []
    for entity_type, rows in fail_rows.items():
        shown = ", ".join(rows[:_FAIL_ROWS_SHOWN])
        more = f" and {len(rows) - _FAIL_ROWS_SHOWN} more" if len(rows) > _FAIL_ROWS_SHOWN else ""
        parts.append(f"{entity_type} in {len(rows)} row(s): {shown}{more}")
    return f"personal data found in field {field!r} where the policy is 'fail': " + "; ".join(parts)


def _limitations(entities: list[str], person_detector: str) -> list[str]:
    notes = [note for t, note in _engines(person_detector).limitations.items() if t in entities]
    skipped = [t for t in ENTITY_TYPES if t not in entities]
    if skipped:
        notes.append("Not scanned (not listed under pii.entities): " + ", ".join(skipped) + ".")
    notes.append(
        "Detection is pattern-, list- and model-based and is not a guarantee: personal data it does "
        "not recognise (other ID numbers, addresses, free-text descriptions of people) passes through."
    )
    return notes


# ---------------------------------------------------------------------------------------------------
# report


def scan_report(results: list[PiiFieldResult]) -> dict[str, Any]:
    """The JSON-serialisable ``pii`` section of the data report; it holds counts, policies, redacted
    examples and limitations, never a detected value."""
    policy: dict[str, str] = {}
    examples: dict[str, list[str]] = {}
    limitations: list[str] = []
    fields: dict[str, dict[str, dict[str, int]]] = {}
    detector: dict[str, Any] = {}
    for res in results:
        detector = detector or dict(res.detector)
        policy.update(res.policy)
        fields[res.field] = {"found": dict(res.found), "remaining": dict(res.remaining)}
        for t, ex in res.examples.items():
            bucket = examples.setdefault(t, [])
            bucket.extend(ex[: MAX_EXAMPLES - len(bucket)])
        limitations.extend(n for n in res.limitations if n not in limitations)
    return {
        "policy": policy,
        "min_score": results[0].min_score if results else None,
        "fields": fields,
        "examples": examples,
        "limitations": limitations,
        "detector": detector,
    }
