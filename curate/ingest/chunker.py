"""Structure-aware chunking under a token budget, with exact character offsets.

A document is cut into heading sections (Markdown `#` headings, which the HTML and DOCX
readers also produce); a section that fits the budget is one chunk. A larger section is
packed greedily from its paragraphs, a paragraph too large from its lines, a line from
its sentences, and a sentence from fixed runs of tokens (hard split). Sections smaller
than `min_tokens` (a title with a short preamble, a heading with no body) join the next
section when both fit. Overlap repeats the last `overlap_tokens` tokens of the previous
chunk of the same section.

Every chunk is a slice: `text[chunk.start:chunk.end] == chunk.text`. Token counts come
from one tokenisation of the whole document (binary searches over token starts).
"""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass

import numpy as np

from curate.ingest.config import ChunkConfig
from curate.ingest.tokenize import Tokenizer

HEADED_FORMATS = frozenset({"markdown", "html", "docx"})
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_FENCE = re.compile(r"^(```|~~~).*?(?:^\1[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
_BOUNDARIES = (
    re.compile(r"\n[ \t]*\n\s*"),  # paragraphs
    re.compile(r"\n\s*"),  # lines
    re.compile(r"(?:(?<=[.!?;:])|(?<=[.!?;:][\"')\]]))\s+"),  # sentences (and clauses ending in ; or :)
)


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    heading_path: tuple[str, ...]
    page: int | None
    n_tokens: int


@dataclass
class _Section:
    start: int
    end: int
    path: tuple[str, ...]


class _Counter:
    """Token counts of spans by binary search over token starts (a list: scalar bisect is
    several times faster than numpy's searchsorted on one value)."""

    def __init__(self, starts: np.ndarray):
        self.starts: list[int] = starts.tolist()

    def index(self, position: int) -> int:
        return bisect.bisect_left(self.starts, position)

    def count(self, start: int, end: int) -> int:
        return self.index(end) - self.index(start)


def sections(text: str, headed: bool) -> list[_Section]:
    """Heading sections in order; text before the first heading is a section with no path."""
    if not headed:
        return [_Section(0, len(text), ())]
    fence_starts, fence_ends = [], []
    for fence in _FENCE.finditer(text):
        fence_starts.append(fence.start())
        fence_ends.append(fence.end())

    def in_fence(position: int) -> bool:
        index = bisect.bisect_right(fence_starts, position) - 1
        return index >= 0 and position < fence_ends[index]

    headings = [m for m in _HEADING.finditer(text) if not in_fence(m.start())]
    out: list[_Section] = []
    if not headings or headings[0].start() > 0:
        out.append(_Section(0, headings[0].start() if headings else len(text), ()))
    stack: list[tuple[int, str]] = []
    for i, match in enumerate(headings):
        level = len(match.group(1))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, match.group(2).strip()))
        end = headings[i + 1].start() if i + 1 < len(headings) else len(text)
        out.append(_Section(match.start(), end, tuple(title for _, title in stack)))
    return out


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    piece = text[start:end]
    stripped = piece.strip()
    if not stripped:
        return start, start
    left = len(piece) - len(piece.lstrip())
    return start + left, start + left + len(stripped)


def _units(text: str, start: int, end: int, level: int) -> list[tuple[int, int]]:
    """Spans of `text[start:end]` cut at the boundaries of one level (separators dropped)."""
    pattern = _BOUNDARIES[level]
    out = []
    cursor = start
    for match in pattern.finditer(text, start, end):
        if match.start() > cursor:
            out.append((cursor, match.start()))
        cursor = match.end()
    if cursor < end:
        out.append((cursor, end))
    return out


def _hard_split(counter: _Counter, start: int, end: int, budget: int) -> list[tuple[int, int]]:
    first, last = counter.index(start), counter.index(end)
    cuts = [int(counter.starts[i]) for i in range(first + budget, last, budget)]
    bounds = [start, *cuts, end]
    return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]


def _split(text: str, counter: _Counter, start: int, end: int, budget: int, level: int) -> list[tuple[int, int]]:
    """Pieces of [start, end), each within `budget` tokens, packed greedily from units."""
    if counter.count(start, end) <= budget:
        return [(start, end)]
    if level >= len(_BOUNDARIES):
        return _hard_split(counter, start, end, budget)
    units = _units(text, start, end, level)
    if len(units) <= 1:
        return _split(text, counter, start, end, budget, level + 1)
    pieces: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    for unit_start, unit_end in units:
        if current is not None and counter.count(current[0], unit_end) <= budget:
            current = (current[0], unit_end)
            continue
        if current is not None:
            pieces.append(current)
            current = None
        if counter.count(unit_start, unit_end) <= budget:
            current = (unit_start, unit_end)
        else:
            pieces.extend(_split(text, counter, unit_start, unit_end, budget, level + 1))
    if current is not None:
        pieces.append(current)
    return pieces


def _merge_small(secs: list[_Section], counter: _Counter, cfg: ChunkConfig) -> list[_Section]:
    """Join sections under `min_tokens` into the next (or, at the end, previous) one."""
    out: list[_Section] = []
    pending: _Section | None = None
    for sec in secs:
        if pending is not None:
            if counter.count(pending.start, sec.end) <= cfg.max_tokens:
                sec = _Section(pending.start, sec.end, sec.path)
            else:
                out.append(pending)
            pending = None
        if counter.count(sec.start, sec.end) < cfg.min_tokens:
            pending = sec
        else:
            out.append(sec)
    if pending is not None:
        if out and counter.count(out[-1].start, pending.end) <= cfg.max_tokens:
            out[-1] = _Section(out[-1].start, pending.end, out[-1].path)
        else:
            out.append(pending)
    return out


def chunk_text(
    text: str,
    tokenizer: Tokenizer,
    cfg: ChunkConfig,
    *,
    headed: bool,
    pages: list[tuple[int, int, int]] | None = None,
) -> list[Span]:
    """The chunk spans of one normalised document text."""
    counter = _Counter(tokenizer.starts(text))
    secs = [s for s in sections(text, headed) if text[s.start:s.end].strip()]
    secs = _merge_small(secs, counter, cfg)
    page_starts = np.asarray([p[1] for p in pages], dtype=np.int64) if pages else None
    page_numbers = [p[0] for p in pages] if pages else []
    budget = cfg.max_tokens - cfg.overlap_tokens
    spans: list[Span] = []
    for sec in secs:
        start, end = _trim(text, sec.start, sec.end)
        if end <= start:
            continue
        pieces = _split(text, counter, start, end, budget if counter.count(start, end) > cfg.max_tokens else cfg.max_tokens, 0)
        previous_start = -1
        for a, b in pieces:
            if previous_start >= 0 and cfg.overlap_tokens:
                # back by `overlap_tokens` tokens, but never to or before the previous chunk's start
                back = max(counter.index(a) - cfg.overlap_tokens, counter.index(previous_start) + 1)
                a = min(a, counter.starts[back])
            a, b = _trim(text, a, b)
            if b <= a:
                continue
            page = None
            if page_starts is not None:
                index = int(np.searchsorted(page_starts, a, side="right")) - 1
                page = page_numbers[max(index, 0)]
            spans.append(Span(a, b, sec.path, page, counter.count(a, b)))
            previous_start = a
    return spans
