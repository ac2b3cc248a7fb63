"""Token-level tagging data: CoNLL files, tag-scheme normalisation and character spans to word tags.

Every input form ends up as words plus one IOB2 tag per word. IOB2 is the single internal scheme
because IOB1, BIOES and BILOU convert to it without loss for valid sequences, so the model learns
one tag set and the strict entity metrics see exactly the entities the input marked.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tuneproof.data.lines import ReadResult, decoded_lines
from tuneproof.errors import Problem

# One problem: the line it is on (None: the record's first line) and what is wrong.
LineProblem = tuple[int | None, str]
# Words for span data and for raw text at inference: runs of word characters (with inner hyphens or
# apostrophes, as in "New-York" or "don't") or single punctuation marks, so "Paris," gives two words.
_WORD = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]", re.UNICODE)
_PREFIX_ALIASES = {"L": "E", "U": "S"}  # BILOU is BIOES under other names


def read_conll(path: Any, encoding: str) -> ReadResult:
    """One row per sentence: ``tokens`` and ``tags`` lists, ``_line`` (first line) and ``_lines``.

    A line holds a token and its tag separated by a TAB (the token may then contain spaces) or by
    whitespace; with more than two fields (CoNLL-2003's POS and chunk columns) the tag is the last.
    Blank lines end a sentence; ``-DOCSTART-`` lines are document markers and are skipped.
    """
    out = ReadResult(columns=["tokens", "tags"])
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []

    def flush() -> None:
        if tokens:
            out.rows.append(
                {"tokens": list(tokens), "tags": list(tags), "_line": lines[0], "_lines": list(lines)}
            )
        tokens.clear()
        tags.clear()
        lines.clear()

    for lineno, raw in decoded_lines(path, encoding, out.problems):
        line = raw.rstrip("\r\n")
        if not line.strip():
            flush()
            continue
        if line.startswith("-DOCSTART-"):
            flush()
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        fields = [f.strip() for f in fields]
        if len(fields) < 2 or not fields[0] or not fields[-1]:
            out.problems.append(Problem(f"{path}:{lineno}", f"expected a token and a tag, got {line!r}"))
            continue
        tokens.append(fields[0])
        tags.append(fields[-1])
        lines.append(lineno)
    flush()
    if not out.rows and not out.problems:
        out.problems.append(Problem(str(path), "no sentences found"))
    return out


def split_tag(tag: str) -> tuple[str, str | None]:
    """``("B", "person")`` from ``"B-person"``, ``("O", None)`` for outside; ValueError if malformed."""
    tag = tag.strip()
    if tag.upper() == "O":
        return "O", None
    m = re.fullmatch(r"([A-Za-z])[-_](.+)", tag)
    if not m:
        raise ValueError("not 'O' or PREFIX-TYPE (B-, I-, E-, S-, L- or U-)")
    prefix = _PREFIX_ALIASES.get(m.group(1).upper(), m.group(1).upper())
    if prefix not in "BIES":
        raise ValueError(f"unknown prefix {m.group(1)!r} (expected B, I, E, S, L or U)")
    return prefix, m.group(2)


def normalise_tags(
    tags: Sequence[Any],
    scheme: str,
    words: Sequence[str] | None = None,
    lines: Sequence[int] | None = None,
    allowed_types: Sequence[str] | None = None,
) -> tuple[list[str], list[LineProblem]]:
    """Validate one sentence's tags under ``scheme`` (auto, iob2, iob1, bioes) and return them as IOB2.

    ``auto`` reads a sentence with E-/S- (or L-/U-) tags as BIOES and any other as IOB2. Problems
    name the word and its line when ``lines`` is given.
    """
    problems: list[LineProblem] = []
    parsed: list[tuple[str, str | None]] = []
    for i, tag in enumerate(tags):
        where = _where(i, words, lines)
        if not isinstance(tag, str):
            problems.append((where[0], f"{where[1]}: tag must be a string, got {type(tag).__name__}"))
            parsed.append(("O", None))
            continue
        try:
            prefix, kind = split_tag(tag)
        except ValueError as exc:
            problems.append((where[0], f"{where[1]}: bad tag {tag!r}: {exc}"))
            parsed.append(("O", None))
            continue
        if kind is not None and allowed_types is not None and kind not in allowed_types:
            problems.append(
                (where[0], f"{where[1]}: unknown entity type {kind!r} (allowed: {', '.join(allowed_types)})")
            )
        parsed.append((prefix, kind))
    if problems:
        return [], problems
    has_bioes = any(p in ("E", "S") for p, _ in parsed)
    if scheme == "bioes" or (scheme == "auto" and has_bioes):
        return _from_bioes(parsed, words, lines)
    if has_bioes:
        i = next(i for i, (p, _) in enumerate(parsed) if p in ("E", "S"))
        line, name = _where(i, words, lines)
        return [], [(line, f"{name}: tag {tags[i]!r} is BIOES, but data.tag_scheme is {scheme}")]
    return _from_iob(parsed, tags, scheme == "iob1", words, lines)


def _where(i: int, words: Sequence[str] | None, lines: Sequence[int] | None) -> tuple[int | None, str]:
    line = lines[i] if lines is not None and i < len(lines) else None
    word = f" {words[i]!r}" if words is not None and i < len(words) else ""
    return line, f"word {i + 1}{word}"


def _from_iob(
    parsed: list[tuple[str, str | None]],
    raw: Sequence[Any],
    iob1: bool,
    words: Sequence[str] | None,
    lines: Sequence[int] | None,
) -> tuple[list[str], list[LineProblem]]:
    out: list[str] = []
    problems: list[LineProblem] = []
    prev: tuple[str, str | None] = ("O", None)
    for i, (prefix, kind) in enumerate(parsed):
        if prefix == "O":
            out.append("O")
        elif prefix == "I" and (prev[0] == "O" or prev[1] != kind):
            if iob1:
                out.append(f"B-{kind}")  # in IOB1 an entity may start with I-
            else:
                line, name = _where(i, words, lines)
                before = "the sentence start" if i == 0 else repr(raw[i - 1])
                problems.append(
                    (
                        line,
                        f"{name}: tag {raw[i]!r} follows {before}; in IOB2 an entity starts "
                        f"with B-{kind} (if the file is IOB1, set data.tag_scheme: iob1)",
                    )
                )
        else:
            out.append(f"{prefix}-{kind}")
        prev = (prefix, kind)
    return (out, []) if not problems else ([], problems)


def _from_bioes(
    parsed: list[tuple[str, str | None]], words: Sequence[str] | None, lines: Sequence[int] | None
) -> tuple[list[str], list[LineProblem]]:
    out: list[str] = []
    problems: list[LineProblem] = []
    open_kind: str | None = None  # the type of the entity a B- opened and no E- closed yet
    for i, (prefix, kind) in enumerate(parsed):
        line, name = _where(i, words, lines)
        tag = "O" if prefix == "O" else f"{prefix}-{kind}"
        if prefix in ("I", "E"):
            if open_kind != kind:
                problems.append((line, f"{name}: {tag} must continue a B-{kind} entity (BIOES)"))
            out.append(f"I-{kind}")
            open_kind = kind if prefix == "I" else None
            continue
        if open_kind is not None:
            problems.append(
                (line, f"{name}: {tag} comes before the open {open_kind} entity was closed with E-")
            )
            open_kind = None
        if prefix == "O":
            out.append("O")
        else:
            out.append(f"B-{kind}")
            open_kind = kind if prefix == "B" else None
    if open_kind is not None:
        line, name = _where(len(parsed) - 1, words, lines)
        problems.append((line, f"{name}: the sentence ends inside a {open_kind} entity (no E- tag)"))
    return (out, []) if not problems else ([], problems)


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character offsets ``[start, end)`` of the words of ``text`` (see ``_WORD``)."""
    return [m.span() for m in _WORD.finditer(text)]


def spans_to_tags(
    text: str, spans: Sequence[Any], allowed_types: Sequence[str] | None = None
) -> tuple[list[str], list[str], list[str]]:
    """Words, IOB2 tags and problems for ``text`` with entity spans ``{"start", "end", "label"}``.

    A span must cover whole words: one that cuts a word is an error rather than silently widened,
    because a widened span changes what the annotator marked.
    """
    offsets = word_spans(text)
    words = [text[a:b] for a, b in offsets]
    tags = ["O"] * len(words)
    problems: list[str] = []
    for j, span in enumerate(spans):
        if not isinstance(span, dict):
            problems.append(f"span {j + 1}: must be an object with start, end and label")
            continue
        start, end, label = span.get("start"), span.get("end"), span.get("label")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
            problems.append(f"span {j + 1}: start and end must be integers")
            continue
        assert isinstance(start, int) and isinstance(end, int)
        if not (0 <= start < end <= len(text)):
            problems.append(f"span {j + 1}: [{start}, {end}) lies outside the text (length {len(text)})")
            continue
        if not isinstance(label, str) or not label.strip():
            problems.append(f"span {j + 1}: label must be a non-empty string")
            continue
        if allowed_types is not None and label not in allowed_types:
            problems.append(
                f"span {j + 1}: unknown entity type {label!r} (allowed: {', '.join(allowed_types)})"
            )
            continue
        inside = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
        cut = [i for i in inside if offsets[i][0] < start or offsets[i][1] > end]
        if cut:
            a, b = offsets[cut[0]]
            problems.append(
                f"span {j + 1} [{start}, {end}) {text[start:end]!r} cuts the word {text[a:b]!r} "
                f"at [{a}, {b}); spans must cover whole words"
            )
            continue
        if not inside:
            problems.append(f"span {j + 1} [{start}, {end}) covers no word")
            continue
        if any(tags[i] != "O" for i in inside):
            problems.append(f"span {j + 1} [{start}, {end}) overlaps another span")
            continue
        tags[inside[0]] = f"B-{label}"
        for i in inside[1:]:
            tags[i] = f"I-{label}"
    return words, tags, problems


def entity_types(tags: Sequence[str]) -> set[str]:
    return {t[2:] for t in tags if t != "O"}


__all__ = ["entity_types", "normalise_tags", "read_conll", "spans_to_tags", "split_tag", "word_spans"]
