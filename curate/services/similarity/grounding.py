"""Finding quotes and values in a chunk, with offsets into the original chunk text.

Matching runs on a normalised copy of both strings (NFKC, case-folded, typographic quotes
and dashes unified, whitespace runs collapsed); a map from normalised to original
positions turns a match back into chunk-relative offsets for the `Evidence` record.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rapidfuzz import fuzz

from schemas.tasks import TaskConfig, TaskType

_TRANSLATE = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u2033": '"', "\u00ab": '"', "\u00bb": '"',
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
    "\u00a0": " ", "\u2026": "...",
})
_EDGE_PUNCT = " \t\n\"'.,;:!?()[]{}"


def normalise(text: str) -> str:
    """The normalised form used for matching (no offset map)."""
    folded = unicodedata.normalize("NFKC", text).translate(_TRANSLATE).casefold()
    return re.sub(r"\s+", " ", folded).strip()


@dataclass(frozen=True)
class NormalisedText:
    text: str
    origin: tuple[int, ...]  # origin[i] = index in the original of normalised char i
    original: str = ""

    @classmethod
    def of(cls, original: str) -> NormalisedText:
        chars: list[str] = []
        origin: list[int] = []
        previous_space = True  # strips leading whitespace
        for index, char in enumerate(original):
            piece = unicodedata.normalize("NFKC", char).translate(_TRANSLATE).casefold()
            for out in piece:
                if out.isspace():
                    if previous_space:
                        continue
                    out = " "
                    previous_space = True
                else:
                    previous_space = False
                chars.append(out)
                origin.append(index)
        while chars and chars[-1] == " ":
            chars.pop()
            origin.pop()
        return cls("".join(chars), tuple(origin), original)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original (start, end) of normalised [start, end)."""
        if not self.origin or end <= start:
            return 0, 0
        return self.origin[start], self.origin[min(end, len(self.origin)) - 1] + 1

    def snap(self, start: int, end: int) -> tuple[int, int]:
        """Widen an original span to whole words (fuzzy alignments may cut a word)."""
        text = self.original
        while start > 0 and text[start - 1].isalnum() and text[start].isalnum():
            start -= 1
        while 0 < end < len(text) and text[end].isalnum() and text[end - 1].isalnum():
            end += 1
        return start, end


@dataclass(frozen=True)
class Match:
    start: int
    end: int
    score: float  # 0..100
    exact: bool


def locate(needle: str, haystack: NormalisedText, *, threshold: float, exact_only: bool = False) -> tuple[Match | None, float]:
    """Where `needle` occurs in the chunk: (match or None, best score found)."""
    target = normalise(needle).strip(_EDGE_PUNCT) or normalise(needle)
    if not target:
        return None, 0.0
    index = haystack.text.find(target)
    if index >= 0:
        start, end = haystack.span(index, index + len(target))
        return Match(start, end, 100.0, True), 100.0
    if exact_only:
        return None, 0.0
    alignment = fuzz.partial_ratio_alignment(target, haystack.text)
    if alignment is None:
        return None, 0.0
    score = float(alignment.score)
    if score < threshold:
        return None, score
    start, end = haystack.snap(*haystack.span(alignment.dest_start, alignment.dest_end))
    return Match(start, end, score, False), score


def normalise_number(value: str) -> str:
    """A number as written, without grouping separators or spaces ("1,024" -> "1024")."""
    cleaned = re.sub(r"[\s,_\u202f]", "", normalise(value))
    return cleaned.rstrip(".")


def number_in(value: str, haystack: NormalisedText) -> Match | None:
    """A number must occur exactly (ignoring grouping separators), not inside a longer number."""
    match, _ = locate(value, haystack, threshold=100, exact_only=True)
    if match is not None and _bounded(haystack.text, normalise(value).strip(_EDGE_PUNCT)):
        return match
    wanted = normalise_number(value)
    if not wanted:
        return None
    for found in re.finditer(r"\d[\d,\u202f ]*(?:\.\d+)?", haystack.text):
        if normalise_number(found.group()) == wanted:
            start, end = haystack.span(found.start(), found.end())
            return Match(start, end, 100.0, True)
    return None


def _bounded(text: str, target: str) -> bool:
    """`target` occurs somewhere not flanked by digits (so "12" is not found in "2012")."""
    for found in re.finditer(re.escape(target), text):
        before = text[found.start() - 1] if found.start() else " "
        after = text[found.end()] if found.end() < len(text) else " "
        if not before.isdigit() and not after.isdigit():
            return True
    return False


# ------------------------------------------------------------------ what an output must show
EXACT_KINDS = ("number", "date", "identifier")


def spans_to_ground(task: TaskConfig, output: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The spans of an output (its JSON dump) that must stand in the chunk, as (evidence
    field, text, how): how is "quote" (a classification or QA quote), "field_quote" (an
    extracted field's quote) or the extracted field's kind. Shared by the grounding
    filter and the check of reviewers' corrections."""
    spans: list[tuple[str, str, str]] = []
    if task.type in (TaskType.CLASSIFICATION, TaskType.QA):
        spans.append(("quote", str(output.get("quote") or ""), "quote"))
    elif task.type is TaskType.EXTRACTION:
        for spec in task.fields:
            value = output.get(spec.name)
            if not isinstance(value, Mapping) or value.get("value") is None:
                continue
            if value.get("quote"):
                spans.append((f"{spec.name}.quote", str(value["quote"]), "field_quote"))
            spans.append((f"{spec.name}.value", str(value["value"]), spec.kind))
    return spans


def ground_span(text: str, how: str, haystack: NormalisedText, *, threshold: float) -> tuple[Match | None, float]:
    """Where a span stands in the chunk, and the best score seen (0-100): numbers, dates and
    identifiers verbatim (`EXACT_KINDS`), everything else at `threshold` or better."""
    if how in EXACT_KINDS:
        match = number_in(text, haystack) if how == "number" else locate(text, haystack, threshold=100, exact_only=True)[0]
        return match, (match.score if match else 0.0)
    return locate(text, haystack, threshold=threshold)
