"""The Presidio pieces that make personal-data detection work offline.

Presidio's stock setup loads ``en_core_web_lg`` for tokens, lemmas and named entities; that model cannot
be downloaded here. What replaces it:

* ``BlankEnglishNlpEngine``: ``spacy.blank("en")``, tokenisation only, with the lower-cased token as
  its "lemma" so Presidio's context words ("born", "phone", "ssn") still raise scores.
* ``OfflineEmailRecognizer``: the stock recognizer validates the domain with ``tldextract``, whose
  default extractor tries to fetch the public-suffix list over the network on first use; this one
  reads the snapshot that ships inside ``tldextract``.
* ``ValidatedPhoneRecognizer``: the stock phone recognizer, scored 0.5 instead of 0.4 (see the class).
* ``DateOfBirthRecognizer``: Presidio has a generic date recognizer but nothing that tells a birth
  date from any other date; this one scores dates low and relies on birth context to lift them.
* ``PersonNameRecognizer``: names from titles, cues and name lists; next to the statistical NER
  model of ``pii_ner`` where that is installed, and alone (see ``PERSON_LIMITATION``) where not.

Everything here is built on first use by ``tuneproof.data.pii``; importing this module only defines
classes.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import importlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import regex
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts, NlpEngine
from presidio_analyzer.predefined_recognizers import EmailRecognizer, PhoneRecognizer, UrlRecognizer

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------
# NLP engine


class BlankEnglishNlpEngine(NlpEngine):
    """Tokenisation-only NLP engine over ``spacy.blank("en")``.

    A blank pipeline has no lemmatiser and returns empty lemmas, which would silently switch off
    Presidio's context enhancer; the lower-cased token text is a good enough lemma for context words.
    """

    engine_name = "blank_spacy"
    is_available = True

    def __init__(self) -> None:
        self.nlp: Any = None

    def load(self) -> None:
        import spacy

        self.nlp = spacy.blank("en")

    def is_loaded(self) -> bool:
        return self.nlp is not None

    def _artifacts(self, doc: Any, language: str) -> NlpArtifacts:
        return NlpArtifacts(
            entities=[],
            tokens=doc,
            tokens_indices=[t.idx for t in doc],
            lemmas=[t.lower_ for t in doc],
            nlp_engine=self,
            language=language,
            scores=[],
        )

    def process_text(self, text: str, language: str) -> NlpArtifacts:
        return self._artifacts(self.nlp(text), language)

    def process_batch(
        self,
        texts: Iterable[str],
        language: str,
        batch_size: int = 256,
        n_process: int = 1,
        **kwargs: Any,
    ) -> Iterator[tuple[str, NlpArtifacts]]:
        for doc in self.nlp.pipe(texts, batch_size=batch_size, n_process=n_process):
            yield doc.text, self._artifacts(doc, language)

    def is_stopword(self, word: str, language: str) -> bool:
        return bool(self.nlp.vocab[word].is_stop)

    def is_punct(self, word: str, language: str) -> bool:
        return bool(self.nlp.vocab[word].is_punct)

    def get_supported_entities(self) -> list[str]:
        return []

    def get_supported_languages(self) -> list[str]:
        return ["en"]


# ---------------------------------------------------------------------------------------------------
# Presidio recognizers, adjusted


@functools.cache
def _offline_tld_extractor() -> Any:
    import tldextract

    # No URLs and no cache dir: the bundled public-suffix snapshot, never the network.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class OfflineEmailRecognizer(EmailRecognizer):
    def validate_result(self, pattern_text: str) -> bool:
        return bool(_offline_tld_extractor()(pattern_text).fqdn)


class ValidatedPhoneRecognizer(PhoneRecognizer):
    """Presidio's phone recognizer (python-phonenumbers, leniency VALID) with three changes.

    * Scored 0.5 rather than 0.4: a match is already a number libphonenumber considers valid for a
      region, a stronger check than most pattern recognizers get at 0.5; at 0.4 every phone number
      written without a word like "phone" nearby would fall under the default ``min_score``.
    * A number labelled as something else ("ISBN 0-306-40615-2", "serial 5012345678") is dropped.
    * Texts with fewer than seven digits skip libphonenumber, which is most of the scan time.
    """

    SCORE = 0.5
    _MIN_DIGITS = 7
    _LABELLED = regex.compile(
        r"(?i)\b(?:isbn(?:-1[03])?|issn|serial|s/n|order|invoice|inv|tracking|sku|ref(?:erence)?|model"
        r"|part|lot|batch|ticket|case|build|commit|version|ver|id)\b(?:\s*(?:no\.?|number|num|#|id))?"
        r"\s*[:#]?\s*$"
    )

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        if sum(c.isdigit() for c in text) < self._MIN_DIGITS:
            return []
        results = super().analyze(text, entities, nlp_artifacts)  # type: ignore[arg-type]
        return [r for r in results if not self._LABELLED.search(text[max(0, r.start - 30) : r.start])]


class FileAwareUrlRecognizer(UrlRecognizer):
    """Presidio's URL recognizer, minus bare file names whose extension is also a country domain.

    "README.md" and "setup.py" match the scheme-less URL pattern (.md and .py are Moldova and
    Paraguay); a bare ``name.ext`` with one of these extensions and no scheme, ``www.`` or path is
    far more often a file than a web address.
    """

    _FILE_LIKE = regex.compile(r"(?i)^[\w\-]+\.(?:md|py|sh|pl|rs|zip|mov|cs|ps|so|pm|jl|sc|ai)$")

    def invalidate_result(self, pattern_text: str) -> bool:
        return bool(self._FILE_LIKE.match(pattern_text.strip("\"'")))

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        # The scheme-less pattern can stop inside a word ("@app.route" -> "app.ro"), and a name after
        # "@" is a handle or decorator; neither is a web address.
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        return [
            r
            for r in results
            if not (r.end < len(text) and text[r.end].isalnum())
            and not text[max(0, r.start - 1) : r.start] == "@"
        ]


_MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_YEAR = r"(?:19|20)\d{2}"
_DAY_SUFFIX = r"(?:st|nd|rd|th)?"


class DateOfBirthRecognizer(PatternRecognizer):
    """Full calendar dates (numeric, ISO or with a month name) introduced by a birth word.

    A date alone scores 0.2, under any sensible ``min_score``; a birth word ("born", "DOB", "date of
    birth", "birthday") before it in the same sentence, with no other number in between, lifts it to
    0.85, so "born on 03/04/1985" and "DOB: 1985-04-03" count while "shipped on 03/04/2021" does not.
    The check is done here rather than by Presidio's context enhancer, whose five-word window reaches
    across sentences ("I was born in 1985. Shipped on 03/04/2021").
    """

    PATTERNS: ClassVar[list[Pattern]] = [
        Pattern("dob numeric d/m/y or m/d/y", rf"\b\d{{1,2}}[/.\-]\d{{1,2}}[/.\-]{_YEAR}\b", 0.2),
        Pattern("dob iso", rf"\b{_YEAR}-\d{{1,2}}-\d{{1,2}}\b", 0.2),
        Pattern(
            "dob day month year",
            rf"\b\d{{1,2}}{_DAY_SUFFIX}\s+(?:of\s+)?{_MONTHS}\.?,?\s+{_YEAR}\b",
            0.2,
        ),
        Pattern("dob month day year", rf"\b{_MONTHS}\.?\s+\d{{1,2}}{_DAY_SUFFIX},?\s+{_YEAR}\b", 0.2),
    ]
    SCORE_WITH_CONTEXT = 0.85

    def __init__(self) -> None:
        super().__init__(
            supported_entity="DATE_OF_BIRTH",
            patterns=self.PATTERNS,
            supported_language="en",
            name="DateOfBirthRecognizer",
        )

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
        regex_flags: int | None = None,
    ) -> list[RecognizerResult]:
        results = super().analyze(text, entities, nlp_artifacts, regex_flags)
        for res in results:
            if _BIRTH_CUE.search(text[max(0, res.start - 60) : res.start]):
                res.score = self.SCORE_WITH_CONTEXT
                res.recognition_metadata[RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY] = True
        return results

    def invalidate_result(self, pattern_text: str) -> bool:
        # Drop "31/31/1990" and dates in the future: neither is anyone's birth date.
        return not _plausible_past_date(pattern_text)


# A birth word, then the rest of its sentence up to the date with no other number in between.
_BIRTH_CUE = regex.compile(
    r"(?i)(?:\b(?:born|birth|birthday|birthdate|dob)\b|\bd\.o\.b\.?)[^\d.!?;\n]{0,50}$"
)


_NUM_DATE = regex.compile(r"(\d{1,4})[/.\-](\d{1,2})[/.\-](\d{1,4})")
_MONTH_NUMBER = {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name}


def _plausible_past_date(text: str) -> bool:
    today = dt.date.today()
    m = _NUM_DATE.search(text)
    if m:
        a, b, c = (int(g) for g in m.groups())
        candidates = [(a, b, c)] if a > 31 else [(c, b, a), (c, a, b)]  # y-m-d, or d/m/y and m/d/y
        return any(_is_past_date(y, mo, d, today) for y, mo, d in candidates)
    digits = [int(x) for x in regex.findall(r"\d+", text)]
    month = next(
        (n for k, n in _MONTH_NUMBER.items() if regex.search(rf"(?i)\b{k}", text)),
        None,
    )
    if month is None or len(digits) != 2:
        return False
    day, year = (digits[0], digits[1]) if digits[0] < 100 else (digits[1], digits[0])
    return _is_past_date(year, month, day, today)


def _is_past_date(year: int, month: int, day: int, today: dt.date) -> bool:
    try:
        return dt.date(year, month, day) <= today
    except ValueError:
        return False


# ---------------------------------------------------------------------------------------------------
# PERSON without a statistical model

PERSON_LIMITATION = (
    "PERSON detection runs without a statistical NER model (en_core_web_lg cannot be downloaded "
    "offline): it finds capitalised names after a title (Mr., Dr., ...) or a cue ('my name is', "
    "'Dear', 'signed'), and capitalised first names from Faker's name lists, alone only after a cue; "
    "lower-case names, names outside those lists and names written without a surname or cue are "
    "missed, so recall on names is limited."
)
PERSON_LIMITATION_NO_FAKER = (
    "PERSON detection runs without a statistical NER model and without a first-name list (the 'faker' "
    "package is not installed): only capitalised names after a title (Mr., Dr., ...) or a cue "
    "('my name is', 'Dear', 'signed') are found, so recall on names is low."
)

# Faker's locales whose names are written in Latin script, as free text here mostly is.
_NAME_LOCALES = (
    "en_US", "en_GB", "en_IE", "en_IN", "en_NG", "en_KE", "en_PK", "en_NZ", "de_DE", "fr_FR",
    "es_ES", "es_MX", "it_IT", "nl_NL", "pt_BR", "pt_PT", "pl_PL", "sv_SE", "da_DK", "no_NO",
    "fi_FI", "tr_TR", "id_ID", "vi_VN", "yo_NG", "ig_NG", "sw", "ro_RO", "cs_CZ", "hu_HU",
)  # fmt: skip

# First names that are also everyday English words, months, places or brands: on their own they are
# far more often the word than the name, so they count only after a title or before a known surname.
_AMBIGUOUS_FIRST = frozenset(
    """
    april may june july august january march autumn summer winter spring dawn eve sunday monday
    will bill mark rose lily iris ivy holly daisy violet hazel heather olive ginger amber ruby pearl
    jade crystal jasmine poppy hope faith grace joy patience charity mercy honor honour trinity
    destiny harmony melody unique precious sunny star sky rain storm river brook ocean forest
    art rich frank guy ray gene don jack pat sue rob bob chase grant hunter mason carter cooper
    taylor page paige lane dale glen cliff wade drew miles norman major price royal king prince
    earl baron duke lord bishop deacon christian angel max jean virginia georgia carolina dakota
    austin houston dallas jackson lincoln washington madison florence sydney paris chelsea london
    jordan israel india china asia africa kenya victoria sterling penny sandy candy misty colt
    cash gay young long short white black brown green gray grey nick rocky dusty buck chance
    chuck clay cole crew dean doc field forrest fox gage hardy heath hill holmes jay jewel kay
    kit lee love lucky mac marsh mercedes porsche lexus nova page rex rod roman roy sage scout
    shade sierra silver stone summers tucker van wells west will york zion bay bee belle beau
    apple berry cherry clementine coco dior eden felicity gemma ira jolly justice karma kind
    liberty lotus marina maya memory miracle moon nancy noble opal pepper queen raven robin
    sable saint serenity shadow spirit tiger true velvet venus wren
    """.split()
)


def ambiguous_first_names() -> frozenset[str]:
    """First names that are also everyday words: alone they are no evidence of a person."""
    return _AMBIGUOUS_FIRST


_TITLES = frozenset(
    "mr mrs ms miss mx dr prof professor sir dame madam madame rev reverend fr mister doctor".split()
)
# Words that end a candidate: "Victoria Station", "Jackson Street", "Grace Hospital".
_PLACE_OR_ORG_WORDS = frozenset(
    """
    street st road rd avenue ave boulevard blvd lane drive way station park square place court
    hospital clinic university college school academy institute inc ltd llc plc corp corporation
    company co group bank hotel airport bridge county city town church cathedral center centre
    museum library hall beach island mountain river lake valley falls bay day award prize
    foundation trust fund club team records studios press airlines motors
    """.split()
)
# Cues that, written just before a capitalised word, say it is a person's name even when the word is
# in no name list ...
_STRONG_CUE = regex.compile(
    r"(?i:(?:\bfull\s+|\b)name\s*(?:is|was|:|=)|\bcalled|\bnamed|\bsigned(?:\s+by)?|\bregards"
    r"|\bsincerely|\bdear|\bpatient|\bassigned\s+to|\bspoke\s+(?:to|with))\s*[,:\-]?\s*$"
)
# ... and weaker ones that only confirm a word that is a known first name ("Thanks, Maria").
_WEAK_CUE = regex.compile(
    r"(?i:\bi\s+am|\bi['’]m|\bthis\s+is|\bthanks|\bthank\s+you|\bcheers|\bbest|\bhi|\bhello"
    r"|\bhey|\bcontact(?:ed)?|\bcustomer|\bclient|\bby|\bfrom|\bwith|\bto|\bmet|\bask|\bemail"
    r"|\bcall(?:ed)?|\band)\s*[,:\-]?\s*$"
)
_NAME_TOKEN = r"(?:\p{Lu}\p{Ll}+(?:\p{Lu}\p{Ll}+)?|O['’]\p{Lu}\p{Ll}+)(?:-\p{Lu}\p{Ll}+)?"
# Up to five capitalised words in a row, a middle initial ("John F. Kennedy") allowed between them.
_RUN = regex.compile(rf"(?<![\p{{L}}\d@./_-]){_NAME_TOKEN}(?:\s(?:\p{{Lu}}\.\s)?{_NAME_TOKEN}){{0,4}}\b")
_TOKEN = regex.compile(_NAME_TOKEN)
_TITLE_BEFORE = regex.compile(r"(?i:\b(?:mr|mrs|ms|miss|mx|dr|prof|sir|dame|rev|fr)\.?\s+$)")


@functools.cache
def name_lists() -> tuple[frozenset[str], frozenset[str]] | None:
    """(first names, surnames), lower-cased, from Faker's person providers; None without Faker."""
    try:
        importlib.import_module("faker.providers.person")
    except ImportError:
        return None
    from spacy.lang.en.stop_words import STOP_WORDS

    first: set[str] = set()
    last: set[str] = set()
    for loc in _NAME_LOCALES:
        try:
            provider = importlib.import_module(f"faker.providers.person.{loc}").Provider
        except (ImportError, AttributeError):
            continue
        for attr in ("first_names", "first_names_male", "first_names_female"):
            first.update(n.lower() for n in getattr(provider, attr, ()) if " " not in n)
        last.update(n.lower() for n in getattr(provider, "last_names", ()) if " " not in n)
    # "My" (Swedish) and "Will" are names somewhere, but as English words they are never evidence.
    return frozenset(first - STOP_WORDS), frozenset(last - STOP_WORDS)


class PersonNameRecognizer(EntityRecognizer):
    """Heuristic PERSON recognizer: capitalised word runs scored by titles, cues and name lists.

    Scores (a detection counts at or above ``min_score``, default 0.5):
      0.85  after a title ("Dr. Ada Obi"), or a known first name followed by a known surname
      0.75  a known first name alone right after a cue ("Dear Maria", "my name is Maria")
      0.70  a known first name followed by one or two other capitalised words ("Maria Kowalczyk")
      0.60  two or three unknown capitalised words right after a cue ("my name is Ngozi Eze")
      0.50  one unknown capitalised word right after a strong cue ("my name is Ngozi")
      0.40  a known first name alone with no cue ("Maria" at the start of a sentence)
    """

    def __init__(self) -> None:
        super().__init__(supported_entities=["PERSON"], supported_language="en", name="PersonNameRecognizer")

    def load(self) -> None:
        lists = name_lists()
        self._first, self._last = lists if lists else (frozenset(), frozenset())

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        if "PERSON" not in entities:
            return []
        results = []
        for run in _RUN.finditer(text):
            found = self._score_run(text, run.start(), run.group())
            if found is not None:
                start, end, score = found
                results.append(self._result(start, end, score))
        return results

    def _score_run(self, text: str, run_start: int, run: str) -> tuple[int, int, float] | None:
        tokens = [
            (run_start + m.start(), run_start + m.end(), m.group().lower()) for m in _TOKEN.finditer(run)
        ]
        # "Mr Smith" without a full stop lands the title inside the run.
        titled = bool(_TITLE_BEFORE.search(text[max(0, run_start - 12) : run_start]))
        while tokens and tokens[0][2] in _TITLES:
            tokens, titled = tokens[1:], True
        if titled:
            name = self._trim(tokens[:3])
            return (name[0][0], name[-1][1], 0.85) if name else None
        # The name starts at the first known first name; capitalised words before it ("Contact",
        # "Thanks") are not part of it.
        first_idx = next(
            (i for i, t in enumerate(tokens) if t[2] in self._first and t[2] not in _AMBIGUOUS_FIRST), None
        )
        if first_idx is None:
            return self._score_unknown(text, tokens)
        name = self._trim(tokens[first_idx : first_idx + 3])
        if not name:
            return None
        if len(name) >= 2:
            score = 0.85 if any(t[2] in self._last for t in name[1:]) else 0.7
            return name[0][0], name[-1][1], score
        prefix = text[max(0, name[0][0] - 40) : name[0][0]]
        cued = bool(_STRONG_CUE.search(prefix) or _WEAK_CUE.search(prefix))
        return name[0][0], name[0][1], 0.75 if cued else 0.4

    def _score_unknown(self, text: str, tokens: list[tuple[int, int, str]]) -> tuple[int, int, float] | None:
        """A run that starts with no known (unambiguous) first name."""
        name = self._trim(tokens[:3])
        if not name:
            return None
        # An ambiguous first name ("Will", "Grace") followed by a known surname still reads as a name.
        if len(name) >= 2 and name[0][2] in self._first and name[1][2] in self._last:
            return name[0][0], name[-1][1], 0.6
        if name[0][2] in _AMBIGUOUS_FIRST or not _STRONG_CUE.search(
            text[max(0, name[0][0] - 40) : name[0][0]]
        ):
            return None
        return name[0][0], name[-1][1], 0.6 if len(name) >= 2 else 0.5

    @staticmethod
    def _trim(tokens: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
        """Cut the run at a place/organisation word; a run that contains one is not a person."""
        for i, t in enumerate(tokens):
            if t[2] in _PLACE_OR_ORG_WORDS:
                return [] if i <= 1 else tokens[:i]
        return tokens

    def _result(self, start: int, end: int, score: float) -> RecognizerResult:
        return RecognizerResult(
            entity_type="PERSON",
            start=start,
            end=end,
            score=score,
            recognition_metadata={
                RecognizerResult.RECOGNIZER_NAME_KEY: "PersonNameRecognizer",
                RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
            },
        )
