"""Structure-aware chunking under a token budget, with exact character offsets.

A document is cut into heading sections (Markdown `#` headings, which the HTML and DOCX
readers also produce); a section that fits the budget is one chunk. A larger section is
packed greedily from its paragraphs, a paragraph too large from its lines, a line from
its sentences, and a sentence from fixed runs of tokens (hard split). Nothing under
`min_tokens` stands alone when it has a neighbour: a section that small (a heading with no
body, a title with a short preamble) always joins the next section (the last one joins the
previous); when the joined section is too large, the small part stays at the head of its
first piece (a heading is never cut off from the text under it); a small piece left at the
end of a split joins its neighbour when both fit. Each span counts what was merged into it.
Overlap repeats the last `overlap_tokens` tokens of the previous chunk of the same section.

Every chunk is a slice: `text[chunk.start:chunk.end] == chunk.text`. Token counts come
from one tokenisation of the whole document (binary searches over token starts).
"""

from __future__ import annotations

import array
import bisect
import itertools
import re
from dataclasses import dataclass

import numpy as np

from curate.ingest.config import ChunkConfig
from curate.ingest.tokenize import Tokenizer

HEADED_FORMATS = frozenset({"markdown", "html", "docx", "pdf"})
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
# the same lines, found faster: a pattern that starts with a literal "\n" is searched for by
# that character, where a MULTILINE "^" is tried at every position (the first line is
# matched on its own)
_HEADING_LINE = re.compile(r"\n(#{1,6})[ \t]+(\S[^\n]*)")
_HEADING_FIRST = re.compile(r"(#{1,6})[ \t]+(\S[^\n]*)")
_NONSPACE = re.compile(r"\S")
_FENCE = re.compile(r"^(```|~~~).*?(?:^\1[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
_BOUNDARIES = (
    re.compile(r"\n[ \t]*\n\s*"),  # paragraphs
    re.compile(r"\n\s*"),  # lines
    # sentences (and clauses ending in ; or :): the separator is group 1, the space after the
    # mark (found from the marks, not by testing a look-behind at every space)
    re.compile(r"[.!?;:][\"')\]]?(\s+)"),
)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    heading_path: tuple[str, ...]
    page: int | None
    n_tokens: int
    page_end: int | None = None
    merged: int = 0  # sections or pieces under min_tokens joined into this span


@dataclass(slots=True)
class _Section:
    start: int
    end: int
    path: tuple[str, ...]
    merged: int = 0
    body: bool = True  # False: only heading lines, which never stand alone
    tokens_start: int = 0  # index of the first token at or after `start`
    tokens_end: int = 0  # ... at or after `end`: the section has tokens_end - tokens_start tokens


class _Counter:
    """Token counts of spans by binary search over token starts: vectorised (numpy) for many
    spans at once, scalar (bisect, built only when a section must be split: scalar bisect is
    several times faster than numpy's searchsorted on one value). Bisect runs over an
    `array.array` copy of the starts: two memory copies, where a list costs a Python int
    per token."""

    def __init__(self, starts: np.ndarray):
        self.array = starts
        self._scalar: array.array[int] | None = None

    @property
    def starts(self) -> array.array[int]:
        if self._scalar is None:
            self._scalar = array.array("q", np.ascontiguousarray(self.array, dtype=np.int64).tobytes())
        return self._scalar

    def index(self, position: int) -> int:
        return bisect.bisect_left(self.starts, position)

    def count(self, start: int, end: int) -> int:
        return self.index(end) - self.index(start)

    def indices(self, positions: list[int]) -> list[int]:
        return np.searchsorted(self.array, np.asarray(positions, dtype=np.int64)).tolist()


def sections(text: str, headed: bool) -> list[_Section]:
    """Heading sections in order; text before the first heading is a section with no path."""
    if not headed:
        return [_Section(0, len(text), ())]
    first = _HEADING_FIRST.match(text)
    headings = ([first] if first else []) + list(_HEADING_LINE.finditer(text))
    # `#` lines inside code fences are not headings (a one-character test first: on text
    # beyond Latin-1 a three-character one costs ~1 ns a character)
    if ("`" in text and "```" in text) or ("~" in text and "~~~" in text):
        fence_starts, fence_ends = [], []
        for fence in _FENCE.finditer(text):
            fence_starts.append(fence.start())
            fence_ends.append(fence.end())

        def in_fence(position: int) -> bool:
            index = bisect.bisect_right(fence_starts, position) - 1
            return index >= 0 and position < fence_ends[index]

        headings = [m for m in headings if not in_fence(m.start(1))]
    out: list[_Section] = []
    if not headings or headings[0].start(1) > 0:
        out.append(_Section(0, headings[0].start(1) if headings else len(text), ()))
    levels: list[int] = []
    path: tuple[str, ...] = ()
    ends = [m.start(1) for m in headings[1:]] + [len(text)] if headings else []
    search = _NONSPACE.search
    for match, end in zip(headings, ends, strict=True):
        marks, title = match.group(1, 2)
        level = len(marks)
        while levels and levels[-1] >= level:
            levels.pop()
            path = path[:-1]
        levels.append(level)
        if title[-1] in " \t#":  # a closing "##" or trailing blanks (else nothing to strip)
            title = title.rstrip(" \t").rstrip("#").rstrip(" \t") or title.strip()
        path = (*path, title)
        out.append(_Section(match.start(1), end, path, 0, search(text, match.end(), end) is not None))
    return out


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """[start, end) without surrounding whitespace, without copying the span."""
    first = _NONSPACE.search(text, start, end)
    if first is None:
        return start, start
    while text[end - 1].isspace():
        end -= 1
    return first.start(), end


def _units(text: str, start: int, end: int, level: int) -> list[tuple[int, int]]:
    """Spans of `text[start:end]` cut at the boundaries of one level (separators dropped)."""
    pattern = _BOUNDARIES[level]
    out = []
    cursor = start
    group = 1 if pattern.groups else 0
    for match in pattern.finditer(text, start, end):
        cut, resume = match.span(group)
        if cut > cursor:
            out.append((cursor, cut))
        cursor = resume
    if cursor < end:
        out.append((cursor, end))
    return out


def _hard_split(counter: _Counter, start: int, end: int, budget: int) -> list[tuple[int, int]]:
    first, last = counter.index(start), counter.index(end)
    cuts = [int(counter.starts[i]) for i in range(first + budget, last, budget)]
    bounds = [start, *cuts, end]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def _only_headings(text: str, start: int, end: int) -> bool:
    return all(_HEADING.fullmatch(line) for line in text[start:end].split("\n") if line.strip())


def _split(
    text: str, counter: _Counter, start: int, end: int, budget: int, level: int, floor: int = 0, headed: bool = False
) -> list[tuple[int, int]]:
    """Pieces of [start, end), each within `budget` tokens, packed greedily from units. A
    piece under `floor` tokens (or of heading lines only) that cannot take the next unit whole
    is split together with it at the next level, so that a heading stays with the start of
    the text under it."""
    if counter.count(start, end) <= budget:
        return [(start, end)]
    if level >= len(_BOUNDARIES):
        return _hard_split(counter, start, end, budget)
    units = _units(text, start, end, level)
    if len(units) <= 1:
        return _split(text, counter, start, end, budget, level + 1, floor, headed)
    # token indices of every unit's start and end, found once: a count is then a difference
    starts, index = counter.starts, counter.index
    firsts = [bisect.bisect_left(starts, unit_start) for unit_start, _ in units]
    lasts = [bisect.bisect_left(starts, unit_end) for _, unit_end in units]
    pieces: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    first = last = 0  # token indices of current's start and end
    for (unit_start, unit_end), unit_first, unit_last in zip(units, firsts, lasts, strict=True):
        if current is not None and unit_last - first <= budget:
            current, last = (current[0], unit_end), unit_last
            continue
        if current is not None and (last - first < floor or (headed and _only_headings(text, *current))):
            pieces.extend(_split(text, counter, current[0], unit_end, budget, level + 1, floor, headed))
            current = pieces.pop()  # the last piece of the split may take the next units
            first, last = index(current[0]), index(current[1])
            continue
        if current is not None:
            pieces.append(current)
            current = None
        if unit_last - unit_first <= budget:
            current, first, last = (unit_start, unit_end), unit_first, unit_last
        else:
            pieces.extend(_split(text, counter, unit_start, unit_end, budget, level + 1, floor, headed))
            current = pieces.pop()
            first, last = index(current[0]), index(current[1])
    if current is not None:
        pieces.append(current)
    return pieces


def _absorb_small(pieces: list[tuple[int, int]], counter: _Counter, floor: int, budget: int) -> list[tuple[int, int, int]]:
    """(start, end, merged) pieces: one under `floor` joins the previous or next piece when
    the two fit the budget together."""
    out: list[tuple[int, int, int]] = [(a, b, 0) for a, b in pieces]
    index = 0
    while index < len(out) and len(out) > 1:
        a, b, merged = out[index]
        if counter.count(a, b) >= floor:
            index += 1
            continue
        if index > 0 and counter.count(out[index - 1][0], b) <= budget:
            out[index - 1] = (out[index - 1][0], b, out[index - 1][2] + merged + 1)
            del out[index]
        elif index + 1 < len(out) and counter.count(a, out[index + 1][1]) <= budget:
            out[index] = (a, out[index + 1][1], out[index + 1][2] + merged + 1)
            del out[index + 1]
        else:
            index += 1
    return out


def _merge_small(secs: list[_Section], cfg: ChunkConfig) -> list[_Section]:
    """Headings without body (however many in a row: withdrawn controls) and sections under
    `min_tokens` join the next section (the last joins the previous) whatever their size
    together: the joined section is split again if it must be."""
    out: list[_Section] = []
    pending: _Section | None = None
    for sec in secs:
        if pending is not None:
            sec = _join(pending, sec, sec.path)
            pending = None
        if not sec.body or sec.tokens_end - sec.tokens_start < cfg.min_tokens:
            pending = sec
        else:
            out.append(sec)
    if pending is not None:
        out[-1:] = [_join(out[-1], pending, out[-1].path)] if out else [pending]
    return out


def _join(a: _Section, b: _Section, path: tuple[str, ...]) -> _Section:
    return _Section(a.start, b.end, path, a.merged + b.merged + 1, a.body or b.body, a.tokens_start, b.tokens_end)


def chunk_text(
    text: str,
    tokenizer: Tokenizer,
    cfg: ChunkConfig,
    *,
    headed: bool,
    pages: list[tuple[int, int, int]] | None = None,
) -> list[Span]:
    """The chunk spans of one normalised document text. One tokenisation; the token counts
    of all sections (and of all sections that fit whole, the common case) come from one
    vectorised search each; only sections too large to fit are split in Python."""
    counter = _Counter(tokenizer.starts(text))
    secs = sections(text, headed)
    found = counter.indices([sec.start for sec in secs] + [sec.end for sec in secs])
    for i, sec in enumerate(secs):
        sec.tokens_start, sec.tokens_end = found[i], found[i + len(secs)]
    secs = [sec for sec in secs if _NONSPACE.search(text, sec.start, sec.end)]
    secs = _merge_small(secs, cfg)
    budget = cfg.max_tokens - cfg.overlap_tokens
    pieces: list[tuple[int, int, tuple[str, ...], int]] = []  # start, end, heading path, merged
    for sec in secs:
        start, end = _trim(text, sec.start, sec.end)
        if end <= start:
            continue
        if sec.tokens_end - sec.tokens_start <= cfg.max_tokens:  # fits whole: no split, no overlap
            pieces.append((start, end, sec.path, sec.merged))
            continue
        split = _absorb_small(_split(text, counter, start, end, budget, 0, cfg.min_tokens, headed), counter, cfg.min_tokens, budget)
        previous_start = -1
        for number, (a, b, merged) in enumerate(split):
            if previous_start >= 0 and cfg.overlap_tokens:
                # back by `overlap_tokens` tokens, but never to or before the previous chunk's start
                back = max(counter.index(a) - cfg.overlap_tokens, counter.index(previous_start) + 1)
                a = min(a, counter.starts[back])
            a, b = _trim(text, a, b)
            if b <= a:
                continue
            pieces.append((a, b, sec.path, merged + (sec.merged if number == 0 else 0)))
            previous_start = a
    bounds = counter.indices([p[0] for p in pieces] + [p[1] for p in pieces])
    n = len(pieces)
    first_pages: list[int | None] = [None] * n
    last_pages: list[int | None] = [None] * n
    if pages:
        page_starts = np.asarray([p[1] for p in pages], dtype=np.int64)
        numbers = [p[0] for p in pages]
        where = np.searchsorted(page_starts, np.asarray([p[0] for p in pieces] + [p[1] - 1 for p in pieces]), side="right") - 1
        at: list[int | None] = [numbers[max(int(i), 0)] for i in where]
        first_pages, last_pages = at[:n], at[n:]
    return [
        Span(a, b, path, first_pages[i], bounds[i + n] - bounds[i], last_pages[i], merged)
        for i, (a, b, path, merged) in enumerate(pieces)
    ]
