"""HTML via selectolax's lexbor backend (a fast, spec-compliant C parser).

The main content (`<main>`, `<article>`, `[role=main]`, else `<body>`) is walked once in
document order: headings become Markdown headings (so the chunker sees sections),
list items become `- ` lines, table rows become `| a | b |` lines, other blocks become
paragraphs; script, style, navigation, header/footer chrome and forms are dropped.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from selectolax.lexbor import LexborHTMLParser, LexborNode

from curate.ingest import errors as E
from curate.ingest.config import IngestConfig
from curate.ingest.errors import IngestError
from curate.ingest.normalize import collapse_spaces, encoding_notes, normalize_text, read_text_file
from curate.ingest.readers.base import Extracted, ReadResult

DROP = ("script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "svg", "iframe", "button", "select")
HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
BLOCKS = frozenset(
    ["address", "article", "blockquote", "dd", "details", "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li", "main", "ol", "p", "pre", "section", "summary", "table", "tbody", "thead", "tfoot", "tr", "td", "th", "caption", "ul", "body", "html", "center"]
)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_BREAK = "\x00"  # a <br> inside a paragraph (NUL never survives decoding into the inline text)


class _Walker:
    def __init__(self) -> None:
        self.blocks: list[str] = []
        self.inline: list[str] = []

    def flush(self, prefix: str = "") -> None:
        text = "\n".join(collapse_spaces(line) for line in "".join(self.inline).split(_BREAK))
        text = text.strip()
        self.inline = []
        if text:
            self.blocks.append(prefix + text)

    def walk(self, node: Any, list_depth: int = 0) -> None:
        for child in node.iter(include_text=True):
            tag = child.tag
            if tag == "-text":
                self.inline.append(child.text_content or "")
            elif tag in {"-comment", "_comment"} or tag in DROP:
                continue
            elif tag == "br":
                self.inline.append(_BREAK)
            elif tag in HEADINGS:
                self.flush()
                title = collapse_spaces(child.text(deep=True, separator=" "))
                if title:
                    self.blocks.append("#" * HEADINGS[tag] + " " + title)
            elif tag == "pre":
                self.flush()
                pre = (child.text(deep=True) or "").strip("\n")
                if pre.strip():
                    self.blocks.append(pre)
            elif tag == "li":
                self.flush()
                sub = _Walker()
                sub.walk(child, list_depth + 1)
                sub.flush()
                indent = "  " * list_depth
                if sub.blocks:
                    first, *rest = sub.blocks
                    self.blocks.append(indent + "- " + first)
                    self.blocks.extend(rest)
            elif tag == "tr":
                self.flush()
                cells = [
                    collapse_spaces(cell.text(deep=True, separator=" ")).replace("|", "\\|")
                    for cell in child.iter()
                    if cell.tag in {"td", "th"}
                ]
                if any(cells):
                    self.blocks.append("| " + " | ".join(cells) + " |")
            elif tag in {"ul", "ol"}:
                self.flush()
                self.walk(child, list_depth)
            elif tag in BLOCKS:
                self.flush()
                self.walk(child, list_depth)
                self.flush()
            else:  # inline element (a, span, strong, ...): its text joins the paragraph
                self.walk(child, list_depth)


def _join(blocks: list[str]) -> str:
    """Blank lines between blocks, but list items and table rows stay on adjacent lines."""
    out: list[str] = []
    previous_kind = ""
    for block in blocks:
        stripped = block.lstrip()
        kind = "li" if stripped.startswith("- ") else "tr" if stripped.startswith("| ") else "p"
        if out:
            out.append("\n" if kind == previous_kind and kind != "p" else "\n\n")
        out.append(block)
        previous_kind = kind
    return "".join(out)


def html_to_text(markup: str) -> tuple[str, str | None]:
    """(normalised text, title) of an HTML page."""
    tree = LexborHTMLParser(markup)
    title_node = tree.css_first("title")
    title = collapse_spaces(title_node.text()) if title_node is not None else None
    root: LexborNode | None = tree.css_first("main") or tree.css_first("article") or tree.css_first('[role="main"]') or tree.body
    if root is None:
        return "", title
    for selector in DROP:
        for node in root.css(selector):
            node.decompose()
    walker = _Walker()
    walker.walk(root)
    walker.flush()
    return normalize_text(_join(walker.blocks)), title or None


def read_html(path: Path, source: str, cfg: IngestConfig) -> ReadResult:
    with path.open("rb") as handle:
        declared = _META_CHARSET.search(handle.read(4096))
    decoded = read_text_file(path, source, cfg, declared.group(1).decode("ascii") if declared else None)
    text, title = html_to_text(decoded.text)
    if not text.strip():
        raise IngestError(E.NO_TEXT, f"{source}: the HTML has no visible text in its main content")
    meta, warnings = encoding_notes(decoded, source)
    return ReadResult([Extracted(text=text, title=title, metadata=meta)], warnings)
