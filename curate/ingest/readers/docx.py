"""DOCX via python-docx: the body in order (paragraphs and tables interleaved as written).

Heading styles become Markdown headings (`Title`/`Heading 1` -> `#`, `Heading 2` -> `##`),
list paragraphs become `- ` / `1. ` lines (indented by level), table rows become
`| a | b |` lines (merged cells once). A file that is not a valid Word package is
`docx_corrupt`.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

from curate.ingest import errors as E
from curate.ingest.config import IngestConfig
from curate.ingest.errors import IngestError
from curate.ingest.normalize import collapse_spaces, normalize_text
from curate.ingest.readers.base import Extracted, ReadResult

_HEADING = re.compile(r"^heading (\d)$", re.IGNORECASE)
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_RUN_CHARS = {_W + "tab": "\t", _W + "ptab": "\t", _W + "cr": "\n", _W + "noBreakHyphen": "-"}


def _paragraph_text(p: Any) -> str:
    """A `w:p` element's text as python-docx's `Paragraph.text` gives it (runs and hyperlinks;
    `w:t`, tabs, breaks, non-breaking hyphens), walking the XML once instead of one XPath query
    per run, which made python-docx's text the slowest part of reading."""
    parts: list[str] = []
    for child in p:
        if child.tag == _W + "r":
            runs = (child,)
        elif child.tag == _W + "hyperlink":
            runs = tuple(child.iterchildren(_W + "r"))
        else:
            continue
        for run in runs:
            for element in run:
                tag = element.tag
                if tag == _W + "t":
                    parts.append(element.text or "")
                elif tag == _W + "br":
                    parts.append("\n" if element.get(_W + "type") in (None, "textWrapping") else "")
                elif tag in _RUN_CHARS:
                    parts.append(_RUN_CHARS[tag])
    return "".join(parts)


def _list_level(paragraph: Any, style: str) -> int | None:
    """The list indent level of a paragraph (0-based), or None when it is no list item."""
    ppr = paragraph._p.pPr
    numpr = ppr.numPr if ppr is not None else None
    if numpr is not None:
        ilvl = numpr.ilvl
        return int(ilvl.val) if ilvl is not None and ilvl.val is not None else 0
    if style.lower().startswith("list"):
        match = re.search(r"(\d)$", style)
        return int(match.group(1)) - 1 if match else 0
    return None


def _table_rows(table: Any) -> list[str]:
    rows = []
    for row in table.rows:
        seen: set[int] = set()
        cells = []
        for cell in row.cells:
            if id(cell._tc) in seen:  # a merged cell repeats in python-docx's grid
                continue
            seen.add(id(cell._tc))
            text = "\n".join(_paragraph_text(p) for p in cell._tc.iterchildren(_W + "p"))
            cells.append(collapse_spaces(text).replace("|", "\\|"))
        if any(cells):
            rows.append("| " + " | ".join(cells) + " |")
    return rows


def docx_to_text(path: Path) -> tuple[str, str | None]:
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = docx.Document(str(path))
    style_names = {style.style_id: style.name or "" for style in document.styles}
    blocks: list[tuple[str, str]] = []  # (kind, text)
    numbers: dict[int, int] = {}
    first_heading = None
    for item in document.iter_inner_content():
        if isinstance(item, Table):
            blocks.extend(("tr", row) for row in _table_rows(item))
            numbers.clear()
            continue
        assert isinstance(item, Paragraph)
        text = collapse_spaces(_paragraph_text(item._p))
        if not text:
            continue
        # style names from one id -> name table: python-docx's `paragraph.style` searches
        # the styles part on every call, which made it the slowest part of reading
        style = style_names.get(item._p.style or "", "")
        heading = _HEADING.match(style)
        if heading or style.lower() == "title":
            depth = int(heading.group(1)) if heading else 1
            blocks.append(("h", "#" * depth + " " + text))
            first_heading = first_heading or text
            numbers.clear()
            continue
        level = _list_level(item, style)
        if level is None:
            blocks.append(("p", text))
            numbers.clear()
            continue
        if "number" in style.lower():
            numbers = {k: v for k, v in numbers.items() if k <= level}
            numbers[level] = numbers.get(level, 0) + 1
            marker = f"{numbers[level]}."
        else:
            marker = "-"
        blocks.append(("li", "  " * level + marker + " " + text))
    parts: list[str] = []
    previous = ""
    for kind, text in blocks:
        if parts:
            parts.append("\n" if kind == previous and kind in {"li", "tr"} else "\n\n")
        parts.append(text)
        previous = kind
    title = document.core_properties.title or first_heading
    return normalize_text("".join(parts)), title or None


def read_docx(path: Path, source: str, cfg: IngestConfig) -> ReadResult:
    if path.stat().st_size == 0:
        raise IngestError(E.EMPTY_FILE, f"{source}: the file is empty")
    if not zipfile.is_zipfile(path):
        raise IngestError(E.DOCX_CORRUPT, f"{source}: not a Word document (a .docx is a ZIP package; this file is not one)")
    try:
        text, title = docx_to_text(path)
    except Exception as error:  # python-docx raises KeyError, ValueError, lxml errors, ...
        raise IngestError(E.DOCX_CORRUPT, f"{source}: the Word package is damaged ({type(error).__name__}: {error})") from None
    if not text.strip():
        raise IngestError(E.NO_TEXT, f"{source}: the document has no text")
    return ReadResult([Extracted(text=text, title=title)])
