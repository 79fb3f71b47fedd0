"""PDF via pypdfium2 (PDFium, Chrome's PDF engine; Apache/BSD licence), in reading order.

PDFium gives each page's text layer as lines. We rebuild what the author wrote from them:

- **Paragraphs** are joined across line and page breaks. A break is a paragraph break when
  the vertical gap is larger than the document's usual line gap, when a short line ends a
  sentence, or when a list item starts; across a page break the paragraph goes on unless the
  page ended a sentence and the next starts a new one. A word hyphenated at a line end is
  joined again when the joined word occurs elsewhere in the document ("imple- mentation" ->
  "implementation"); otherwise the hyphen is kept ("organization-defined").
- **Headings** come from the outline (bookmarks) where there is one, else from lines set
  larger than the body text (font sizes from PDFium), and become Markdown `#` lines, so the
  chunker cuts sections as it does for Markdown, HTML and DOCX.
- **Running headers, footers and page numbers**: lines at the top or bottom of most pages
  with the same text (digits aside), and page-number lines, are dropped and counted in the
  document's metadata.

The text is assembled here, so each page's span in it (`Document.pages`) is exact, and
chunks may cross pages. Bad PDFs are told apart so that the person fixing them knows what to
do: encrypted (ask for an unprotected copy), truncated (the download or copy was cut off),
corrupt (not a PDF or broken structure), and no text layer (a scan: OCR, see
`curate.ingest.ocr`).
"""

from __future__ import annotations

import codecs
import ctypes
import itertools
import re
import statistics
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from curate.ingest import errors as E
from curate.ingest.config import IngestConfig
from curate.ingest.errors import IngestError
from curate.ingest.readers.base import Extracted, ReadResult

_EOF_WINDOW = 1024  # the PDF trailer's %%EOF sits in the last 1 KiB (ISO 32000, Acrobat rule)
# PDFium marks a hyphen that ended a line as U+FFFE (older builds: U+0002) and drops the
# line break; a line may also end with a plain "-" or a soft hyphen.
_HYPHEN_MARK = "\ufffe"
# a line, cut after PDFium's line-end hyphen mark too: PDFium joins the hyphen's line with
# whatever text object comes next in the content, which may be a footer
# (from its first character that is neither white space nor the mark: what follows is
# stripped on the right)
_LINE = re.compile(r"[^\s\ufffe\x02][^\r\n\ufffe\x02]*+[\ufffe\x02]?")
_CLOSERS = "\"'”’)]"
_SENTENCE_ENDS = frozenset(".!?:;")
_SPACES = re.compile(r"[ \t\u00a0]+")
_WORD = re.compile(r"[^\W\d_]+")
_LIST_ITEM = re.compile(r"^(?:[•◦▪‣∙·*–-]\s|\(?\d{1,3}[.)]\s|\(?[a-z][.)]\s)")
_PAGE_NUMBER = re.compile(r"^(?:page\s+)?[-–—]?\s*\d{1,4}\s*[-–—]?(?:\s*(?:of|/)\s*\d{1,4})?$", re.IGNORECASE)
_DIGITS = re.compile(r"\d+")
_NON_WORD = re.compile(r"\W+")
_ALNUM = re.compile(r"[^\W_]")  # a letter or digit (str.isalnum)
_HEADING_SIZE = 1.15  # a line at least this much larger than the body text is a heading
_BUFFERS = threading.local()


def _bare(function: Any, restype: Any) -> Any:
    """A bare prototype of one of PDFium's C functions, for the calls made per line: ctypes
    then checks no argument against argtypes (a handle, a C int and a pointer go as they
    are), which halves the cost of a call."""
    address = ctypes.cast(function, ctypes.c_void_p).value
    if not address:
        raise RuntimeError(f"pypdfium2 has no address for {function!r}")
    return ctypes.CFUNCTYPE(restype)(address)


_LOOSE_CHAR_BOX = _bare(pdfium_c.FPDFText_GetLooseCharBox, ctypes.c_int)
_FONT_SIZE = _bare(pdfium_c.FPDFText_GetFontSize, ctypes.c_double)


@dataclass(slots=True)
class _Line:
    text: str
    page: int  # 1-based
    left: float
    right: float
    top: float
    bottom: float
    size: float
    height: float  # of one line (the first character's box): `top - bottom` spans two when PDFium joined them
    first_word_right: float  # right edge of the first word: would it have fitted on the line before?
    heading: int = 0  # Markdown level, 0 = body


def _ends_sentence(text: str) -> bool:
    """Ends with . ! ? : or ; (closing quotes and brackets after it allowed)."""
    return text.rstrip(_CLOSERS)[-1:] in _SENTENCE_ENDS


def _clean(text: str) -> str:
    """Hyphen marks as one, runs of spaces as one, NFC, no BOM (lines keep their breaks)."""
    # a soft hyphen ending a line marks a break inside a word; elsewhere it is invisible
    if not text.isascii():
        text = text.replace("\x02", _HYPHEN_MARK).replace("\u00ad\n", _HYPHEN_MARK + "\n").replace("\u00ad", "").replace("\ufeff", "")
        text = unicodedata.normalize("NFC", text)
    elif "\x02" in text:
        text = text.replace("\x02", _HYPHEN_MARK)
    if "  " in text or "\t" in text or "\u00a0" in text:  # a regex pass only where needed
        text = _SPACES.sub(" ", text)
    return text.strip()


def _page_text(textpage: Any) -> str:
    """The text page's text, as pypdfium2's `get_text_range()` reads it (without its helper
    objects): characters PDFium leaves out of the text at either end are skipped before
    sizing the buffer, which PDFium would otherwise overrun (pypdfium2 issues 261, 298)."""
    last = pdfium_c.FPDFText_CountChars(textpage) - 1
    first = 0
    text_index = pdfium_c.FPDFText_GetTextIndexFromCharIndex
    while first <= last and text_index(textpage, first) == -1:
        first += 1
    while first <= last and text_index(textpage, last) == -1:
        last -= 1
    if first > last:
        return ""
    buffer = _text_buffer(text_index(textpage, last) + 2 - text_index(textpage, first))  # with the NUL
    written = pdfium_c.FPDFText_GetText(textpage, first, last + 1 - first, buffer)
    return codecs.decode(memoryview(buffer)[: written - 1], "utf-16-le", "ignore")


def _text_buffer(size: int) -> Any:
    """A UTF-16 buffer of at least `size` units, kept per thread and grown by doubling: a
    ctypes array of a new length is a new ctypes type, which costs more than reading a page."""
    buffer = getattr(_BUFFERS, "text", None)
    if buffer is None or len(buffer) < size:
        buffer = (ctypes.c_ushort * max(4096, 1 << (size - 1).bit_length()))()
        _BUFFERS.text = buffer
    return buffer


def _page_lines(textpage: Any, page: int, sizes: bool = True) -> list[_Line]:
    """The page's text lines with their boxes (PDF units, y up) and font size, from PDFium's
    text layer (`textpage`: PDFium's handle): one call for the text, the lines found by one
    regex over it, then two or three calls per line straight to PDFium's C API (bare
    prototypes: pypdfium2's helpers and ctypes' argument checks cost more than the call),
    the text cleaned in one pass. Font sizes are read only when `sizes` (no outline to take
    headings from)."""
    raw = _page_text(textpage)
    matches = list(_LINE.finditer(raw))
    if not matches:
        return []
    pieces = [match.group().rstrip() for match in matches]
    texts = _clean("\n".join(pieces)).split("\n")
    out = []
    rect = pdfium_c.FS_RECTF()
    box = ctypes.byref(rect)
    loose_box, font_size = _LOOSE_CHAR_BOX, _FONT_SIZE
    after_end = True  # the first line of a page may follow a sentence end on the page before
    for match, piece, text in zip(matches, pieces, texts, strict=True):
        first = match.start()
        last = first + len(piece) - 1
        if text:
            # PDFium may have joined two visual lines (a line-end hyphen): the top and left
            # come from the first character, the bottom and right from the last
            loose_box(textpage, first, box)
            left, top, first_bottom = rect.left, rect.top, rect.bottom
            loose_box(textpage, last, box)
            bottom = rect.bottom
            right = word_right = rect.right
            if after_end:  # only then is "would the first word have fitted above?" asked
                space = piece.find(" ")
                if space > 0:
                    loose_box(textpage, first + space - 1, box)
                    word_right = rect.right
            size = round(font_size(textpage, first), 1) if sizes else 0.0
            out.append(_Line(text, page, left, right, top, bottom, size, top - first_bottom, word_right))
        after_end = piece.rstrip(_CLOSERS)[-1:] in _SENTENCE_ENDS
    return out


def _drop_running_lines(pages: list[list[_Line]]) -> dict[str, Any]:
    """Remove running headers/footers (same text, digits aside, at the top or bottom of most
    pages) and page numbers; returns what was dropped. Only the lines at a page's edges are
    looked at."""
    edge = 2
    keys: Counter[str] = Counter()

    def key(line: _Line) -> str:
        return _DIGITS.sub("#", line.text.lower())

    edges = []  # per page: (position, key) of its first and last lines
    for lines in pages:
        count = len(lines)
        edges.append([(position, key(lines[position])) for position in sorted({*range(min(edge, count)), *range(max(0, count - edge), count)})])
        keys.update({k for _, k in edges[-1]})
    with_text = sum(1 for lines in pages if lines)
    repeated = {k for k, n in keys.items() if with_text >= 3 and n >= max(3, 0.6 * with_text)}
    dropped_text: Counter[str] = Counter()
    numbers = 0
    for lines, at_edges in zip(pages, edges, strict=True):
        count = len(lines)
        drop = []
        for position, line_key in at_edges:
            line = lines[position]
            if count > 1 and _PAGE_NUMBER.match(line.text):
                numbers += 1
                drop.append(position)
            elif line_key in repeated:
                dropped_text[line.text] += 1
                drop.append(position)
        for position in reversed(drop):
            del lines[position]
    out: dict[str, Any] = {}
    if dropped_text:
        out["running_lines_dropped"] = sum(dropped_text.values())
        out["running_lines"] = sorted({_DIGITS.sub("#", text) for text in dropped_text})
    if numbers:
        out["page_numbers_dropped"] = numbers
    return out


def _outline(document: Any, max_depth: int = 6) -> list[tuple[str, int, int]]:
    """(title, page index, level) of the bookmarks that point into the document, through
    PDFium's C API (pypdfium2's helpers make two buffers and two objects per bookmark)."""
    raw = document.raw
    buffer = ctypes.create_string_buffer(512)
    out: list[tuple[str, int, int]] = []
    seen: set[int] = set()
    stack = [(pdfium_c.FPDFBookmark_GetFirstChild(raw, None), 0)]
    while stack:
        bookmark, level = stack.pop()
        while bookmark:
            address = ctypes.addressof(bookmark.contents)
            if address in seen:  # a circular outline
                break
            seen.add(address)
            size = pdfium_c.FPDFBookmark_GetTitle(bookmark, buffer, len(buffer))
            if size > len(buffer):
                buffer = ctypes.create_string_buffer(size)
                size = pdfium_c.FPDFBookmark_GetTitle(bookmark, buffer, len(buffer))
            title = _clean(buffer.raw[: max(0, size - 2)].decode("utf-16-le", errors="replace"))
            dest = pdfium_c.FPDFBookmark_GetDest(raw, bookmark)
            index = pdfium_c.FPDFDest_GetDestPageIndex(raw, dest) if dest else -1
            if index >= 0 and title:
                out.append((title, index, level))
            following = pdfium_c.FPDFBookmark_GetNextSibling(raw, bookmark)
            if level + 1 < max_depth:
                child = pdfium_c.FPDFBookmark_GetFirstChild(raw, bookmark)
                if child:  # depth first, in document order: the siblings wait on the stack
                    stack.append((following, level))
                    bookmark, level = child, level + 1
                    continue
            bookmark = following
    return out


def _comparable(text: str) -> str:
    return _NON_WORD.sub(" ", text.replace(_HYPHEN_MARK, "-")).strip().lower()


def _merge_lines(lines: list[_Line], index: int, count: int) -> None:
    """Make lines[index:index + count] one line (a heading set over several lines)."""
    first, rest = lines[index], lines[index + 1:index + count]
    first.text = " ".join([first.text, *(line.text for line in rest)])
    first.bottom, first.right = rest[-1].bottom, rest[-1].right
    del lines[index + 1:index + count]


def _mark_headings(pages: list[list[_Line]], outline: list[tuple[str, int, int]], body: float) -> str | None:
    """Set `heading` on heading lines (joining a heading set over two or three lines);
    returns where headings came from."""
    if outline:
        by_page: dict[int, list[tuple[str, int]]] = {}
        for title, index, level in outline:
            by_page.setdefault(index + 1, []).append((_comparable(title), level))
        found = 0
        for lines in pages:
            wanted = by_page.get(lines[0].page) if lines else None
            # a cheap test first: does a title of this page start with the line's first
            # letter or digit? (the first characters of the titles still wanted)
            initials = {title[:1] for title, _ in wanted or ()}
            index = 0
            while wanted and index < len(lines):
                text = lines[index].text
                if text[:1].isalnum():  # most lines: no search for the first letter or digit
                    initial = text[0].lower()
                else:
                    alnum = _ALNUM.search(text)
                    initial = alnum.group().lower() if alnum else ""
                if initial and (initial not in initials if len(initial) == 1 else not any(t.startswith(initial) for t, _ in wanted)):
                    index += 1
                    continue
                line_text = _comparable(lines[index].text)
                for position, (title, level) in enumerate(wanted):
                    if not title.startswith(line_text):
                        continue
                    text, count = line_text, 1
                    while text != title and title.startswith(text + " ") and count < 3 and index + count < len(lines):
                        text = _comparable(" ".join(line.text for line in lines[index:index + count + 1]))
                        count += 1
                    if text == title:
                        if count > 1:
                            _merge_lines(lines, index, count)
                        lines[index].heading = min(level + 1, 6)
                        del wanted[position]
                        initials = {title[:1] for title, _ in wanted}
                        found += 1
                        break
                index += 1
        if found:
            return "outline"
    if body <= 0:  # sizes not read (an outline was there), or no text
        return None
    sizes = sorted({line.size for lines in pages for line in lines if line.size >= body * _HEADING_SIZE}, reverse=True)
    if not sizes:
        return None
    level_of = {size: min(rank + 1, 6) for rank, size in enumerate(sizes)}
    for lines in pages:
        index = 0
        while index < len(lines):
            line = lines[index]
            if line.size in level_of and len(line.text) <= 150 and not line.text.endswith(","):
                line.heading = level_of[line.size]
                follows = lines[index + 1] if index + 1 < len(lines) else None
                if follows is not None and follows.size == line.size and line.bottom - follows.top < 0.5 * line.height:
                    _merge_lines(lines, index, 2)  # the same heading, wrapped
                    continue
            index += 1
    return "font_size"


def _body_size(pages: list[list[_Line]]) -> float:
    weights: Counter[float] = Counter()
    for lines in pages:
        for line in lines:
            weights[line.size] += len(line.text)
    if not weights:
        return 0.0
    # the size of most of the text; of sizes nearly as common, the smallest (in a short
    # document a heading can hold as many characters as the body)
    most = max(weights.values())
    return min(size for size, n in weights.items() if n >= 0.5 * most)


def _usual_gap(pages: list[list[_Line]]) -> float:
    gaps = [
        a.bottom - b.top
        for lines in pages
        for a, b in itertools.pairwise(lines)
        if not a.heading and not b.heading and a.bottom - b.top > -2
    ]
    if len(gaps) >= 8:
        return statistics.median(gaps)
    # too few lines to learn the leading from: at most a third of a line, as in body text
    heights = [line.height for lines in pages for line in lines if not line.heading]
    usual = statistics.median(heights) / 3 if heights else 0.0
    return min(statistics.median(gaps), usual) if gaps else usual


def _next_word_fits(a: _Line, b: _Line, margin: float) -> bool:
    """Would the first word of `b` have fitted at the end of `a`? Then the typesetter broke
    the line on purpose: the end of a paragraph, not a wrap."""
    per_char = (b.right - b.left) / max(1, len(b.text))  # about a space
    return a.right + per_char + (b.first_word_right - b.left) <= margin


def _breaks(a: _Line, b: _Line, gap: float, right_margin: dict[int, float], ends: bool) -> str:
    """How line `b` follows line `a` (`ends`: `a` ends a sentence): " " (same paragraph),
    "\\n" (a list item, or a line that ended a sentence where the next word would have
    fitted) or "\\n\\n" (a new paragraph)."""
    if a.heading or b.heading:
        return "\n\n"
    deliberate = ends and _next_word_fits(a, b, right_margin[a.page])
    if a.page != b.page:  # the paragraph goes on unless the page ended it and a new one starts
        return "\n\n" if deliberate and not b.text[:1].islower() else " "
    if a.bottom - b.top > max(2.0 * gap, gap + 0.4 * max(1.0, a.height)):
        return "\n\n"
    if ends and _LIST_ITEM.match(b.text):  # "of policy / 18. Sentence" goes on
        return "\n"
    return "\n" if deliberate else " "


def _join_word(head: str, tail: str, occurs: Callable[[str], bool]) -> bool:
    """A word split by a line-end hyphen (`head-` / `tail`): True to join it without the
    hyphen, when the joined word occurs elsewhere in the document (`occurs`, given it in
    lower case) and `tail` is lower case."""
    left = _WORD.findall(head[-40:])
    right = _WORD.findall(tail[:40])
    return bool(left and right and tail[:1].islower() and occurs((left[-1] + right[0]).lower()))


def _assemble(pages: list[list[_Line]]) -> tuple[str, list[tuple[int, int, int]], int]:
    """(text, page spans, hyphenated words joined): paragraphs joined across lines and pages."""
    lines = [line for page_lines in pages for line in page_lines]
    lowered: str | None = None
    known: dict[str, bool] = {}

    def occurs(word: str) -> bool:
        """In the document's text in lower case (made when a line first ends on a hyphen)?
        Each word is looked for once: a word not there costs a scan of the whole text."""
        nonlocal lowered
        if word not in known:
            if lowered is None:
                lowered = "\n".join(line.text for line in lines).lower()
            known[word] = word in lowered
        return known[word]

    gap = _usual_gap(pages)
    right_margin: dict[int, float] = {}
    for line in lines:
        if not line.heading or line.page not in right_margin:
            right_margin[line.page] = max(right_margin.get(line.page, 0.0), line.right)
    joined = 0
    parts: list[str] = []  # line text, joint, line text, joint, ...: offsets are added up at the end
    previous: _Line | None = None
    ends = False  # the previous line ended a sentence
    for line in lines:
        text = line.text  # a hyphen mark can only end it: lines are cut after one
        if line.heading:
            text = "#" * line.heading + " " + text.replace(_HYPHEN_MARK, "-")
        if previous is not None:
            joint = _breaks(previous, line, gap, right_margin, ends)
            if joint == " " and text[:1].isalpha():
                last = parts[-1]
                if last.endswith((_HYPHEN_MARK, "-")) and last[-2:-1].isalpha():
                    joint = ""  # a word or a compound split at the line end: no space
                    if _join_word(last[:-1], text, occurs):
                        parts[-1] = last[:-1]
                        joined += 1
                    else:
                        parts[-1] = last[:-1] + "-"
            parts.append(joint)
        parts.append(text.replace(_HYPHEN_MARK, "-"))
        previous = line
        ends = _ends_sentence(line.text)
    # each page spans from the start of its first line to the end of its last
    line_ends = list(itertools.accumulate(map(len, parts)))[::2]
    spans: dict[int, list[int]] = {}
    for line, end, text in zip(lines, line_ends, parts[::2], strict=True):
        span = spans.get(line.page)
        if span is None:
            spans[line.page] = [end - len(text), end]
        else:
            span[1] = end
    return "".join(parts), [(page, s, e) for page, (s, e) in sorted(spans.items())], joined


def _open(data: bytes, source: str) -> Any:
    if not data or data.isspace():  # (data.strip() would copy the file)
        raise IngestError(E.EMPTY_FILE, f"{source}: the file is empty")
    if b"%PDF-" not in data[:1024]:
        raise IngestError(E.PDF_CORRUPT, f"{source}: no %PDF- header: this is not a PDF file")
    truncated = b"%%EOF" not in data[-_EOF_WINDOW:]
    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as error:
        code = getattr(error, "err_code", None)
        if code in (pdfium_c.FPDF_ERR_PASSWORD, pdfium_c.FPDF_ERR_SECURITY):
            raise IngestError(
                E.PDF_ENCRYPTED,
                f"{source}: the PDF is encrypted (password protected); provide an unprotected copy",
            ) from None
        if truncated:
            raise IngestError(E.PDF_TRUNCATED, f"{source}: the PDF ends early (no %%EOF trailer) and cannot be opened: the file was cut off") from None
        raise IngestError(E.PDF_CORRUPT, f"{source}: PDFium cannot open it ({error})") from None
    if truncated:
        pages = len(document)
        document.close()
        raise IngestError(
            E.PDF_TRUNCATED,
            f"{source}: the PDF has no %%EOF trailer at its end: the file was cut off "
            f"(PDFium recovered {pages} page(s); refusing partial text)",
        )
    return document


def _read_page(document: Any, index: int, source: str, sizes: bool) -> list[_Line]:
    """One page's lines, through PDFium's C API: pypdfium2's page and text-page helpers
    add Python objects and finalizers per page that this reader does not need."""
    page = pdfium_c.FPDF_LoadPage(document.raw, index)
    if not page:
        raise IngestError(E.PDF_CORRUPT, f"{source}: page {index + 1} cannot be read (PDFium cannot load it)")
    try:
        textpage = pdfium_c.FPDFText_LoadPage(page)
        if not textpage:
            raise IngestError(E.PDF_CORRUPT, f"{source}: page {index + 1} cannot be read (PDFium cannot load its text)")
        try:
            return _page_lines(textpage, index + 1, sizes)
        finally:
            pdfium_c.FPDFText_ClosePage(textpage)
    finally:
        pdfium_c.FPDF_ClosePage(page)


def pdf_lines(document: Any, source: str, sizes: bool = True) -> tuple[list[list[_Line]], list[int]]:
    """Lines of every page, and the 1-based numbers of pages without a text layer."""
    pages = [_read_page(document, index, source, sizes) for index in range(len(document))]
    return pages, [number for number, lines in enumerate(pages, start=1) if not lines]


def _ocr(data: bytes, source: str, pages: list[list[_Line]], empty: list[int], cfg: IngestConfig) -> list[int]:
    """OCR the pages without text (ingest.ocr: auto) and put their lines in `pages`; returns
    the pages that got text. Font sizes of OCR text are not the page's: they are not read."""
    from curate.ingest.ocr import ocr_pdf

    document = pdfium.PdfDocument(ocr_pdf(data, source, empty, cfg))
    got = []
    try:
        for number in empty:
            pages[number - 1] = _read_page(document, number - 1, source, sizes=False)
            if pages[number - 1]:
                got.append(number)
    finally:
        document.close()
    return got


def read_pdf(path: Path, source: str, cfg: IngestConfig) -> ReadResult:
    data = path.read_bytes()
    document = _open(data, source)
    try:
        title = document.get_metadata_value("Title")
        n_pages = len(document)
        outline = _outline(document)
        pages, empty_pages = pdf_lines(document, source, sizes=not outline)
    finally:
        document.close()
    ocred: list[int] = []
    if empty_pages and cfg.ocr == "auto":
        ocred = _ocr(data, source, pages, empty_pages, cfg)
        empty_pages = [number for number in empty_pages if number not in ocred]
    if not any(pages):
        from curate.ingest.ocr import HOW_TO_ENABLE

        raise IngestError(
            E.PDF_NO_TEXT_LAYER,
            f"{source}: none of its {n_pages} page(s) has a text layer (a scanned PDF?): "
            + ("OCR found no text either" if ocred else f"to OCR it, {HOW_TO_ENABLE}"),
        )
    dropped = _drop_running_lines(pages)
    # with an outline, font sizes were not read: no body size to tell headings by
    headings = _mark_headings(pages, outline, 0.0 if outline else _body_size(pages))
    text, spans, rejoined = _assemble(pages)
    meta: dict[str, Any] = {"n_pages": n_pages, **dropped}
    if empty_pages:
        meta["pages_without_text"] = empty_pages
    if ocred:
        meta["ocr_pages"] = ocred
    if headings:
        meta["headings_from"] = headings
    if rejoined:
        meta["line_end_hyphens"] = rejoined
    first_heading = next((line.text for lines in pages for line in lines if line.heading), None)
    title = title or first_heading
    return ReadResult([Extracted(text=text, title=title, pages=spans, metadata=meta)])
