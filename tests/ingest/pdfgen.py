"""A small PDF writer for tests: text lines placed by hand on pages (Helvetica, no library).

Real PDFs of real layouts, so the reader's line, paragraph, page-break, hyphen, heading and
running-header handling is tested against a ground truth we wrote ourselves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PAGE_WIDTH, PAGE_HEIGHT = 612, 792
LEFT, TOP, BOTTOM = 72, 730, 80
BODY_SIZE, HEADING_SIZE = 10, 16
LEADING, PARAGRAPH_GAP = 14, 10
TEXT_WIDTH = 440  # points: lines are broken by width, as a typesetter does
# Helvetica advance widths (Adobe's AFM, per 1000 em) of the characters the tests write
_WIDTHS = dict(
    zip("abcdefghijklmnopqrstuvwxyz", [556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500], strict=True)
) | dict(
    zip("ABCDEFGHIJKLMNOPQRSTUVWXYZ", [667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611], strict=True)
) | {" ": 278, ".": 278, ",": 278, "-": 333, ":": 278, ";": 278, "(": 333, ")": 333} | {d: 556 for d in "0123456789"}


def width(text: str, size: float = BODY_SIZE) -> float:
    return sum(_WIDTHS.get(ch, 556) for ch in text) * size / 1000


@dataclass
class Placed:
    x: float
    y: float
    size: float
    text: str


@dataclass
class Layout:
    pages: list[list[Placed]] = field(default_factory=lambda: [[]])
    y: float = TOP

    def _room(self, height: float) -> None:
        if self.y - height < BOTTOM:
            self.pages.append([])
            self.y = TOP

    def line(self, text: str, size: float = BODY_SIZE, leading: float = LEADING) -> None:
        self._room(leading)
        self.pages[-1].append(Placed(LEFT, self.y, size, text))
        self.y -= leading

    def gap(self, height: float = PARAGRAPH_GAP) -> None:
        self.y -= height


def wrap(paragraph: str, limit: float, hyphenate: dict[str, int]) -> list[str]:
    """Lines at most `limit` points wide; a word of `hyphenate` that does not fit is split
    with a hyphen at the line end ("imple-" / "mentation"), as a typesetter would, at most
    as many times as the count says (so that the whole word is seen elsewhere too)."""
    lines: list[str] = []
    current = ""
    for word in paragraph.split(" "):
        candidate = f"{current} {word}" if current else word
        if width(candidate) <= limit:
            current = candidate
            continue
        bare = word.rstrip(".,;:")
        room = max((n for n in range(len(bare) - 1) if width(f"{current} {word[:n]}-") <= limit), default=0)
        if hyphenate.get(bare.lower(), 0) > 0 and current and room >= 2 and len(bare) - room >= 2:
            hyphenate[bare.lower()] -= 1
            lines.append(f"{current} {word[:room]}-")
            current = word[room:]
            continue
        cut = word.index("-") + 1 if "-" in word else 0  # a compound breaks after its own hyphen
        if current and cut >= 2 and width(f"{current} {word[:cut]}") <= limit:
            lines.append(f"{current} {word[:cut]}")
            current = word[cut:]
            continue
        lines.append(current)
        current = word
    if current:
        lines.append(current)
    return lines


def layout(blocks: list[tuple[str, str]], *, limit: float = TEXT_WIDTH, hyphenate: set[str] | None = None) -> Layout:
    """blocks: ("h", heading) or ("p", paragraph); paragraphs flow over pages. Words of
    `hyphenate` may be split at line ends, all but one of their occurrences."""
    out = Layout()
    everything = " ".join(text.lower() for _, text in blocks)
    splits = {word: len(re.findall(rf"\b{word}\b", everything)) - 1 for word in hyphenate or set()}
    for kind, text in blocks:
        if kind == "h":
            out._room(LEADING * 4)  # a heading is not left alone at the bottom of a page
            out.gap(PARAGRAPH_GAP)
            out.line(text, HEADING_SIZE, leading=HEADING_SIZE + 8)
        else:
            for line in wrap(text, limit, splits):
                out.line(line)
            out.gap()
    return out


def with_running_lines(pages: list[list[Placed]], header: str, footer: str = "Page {n} of {total}") -> list[list[Placed]]:
    """A running header at the top and a page number line at the bottom of every page."""
    total = len(pages)
    return [
        [Placed(LEFT, 760, 8, header), *lines, Placed(PAGE_WIDTH / 2 - 20, 40, 8, footer.format(n=number, total=total))]
        for number, lines in enumerate(pages, start=1)
    ]


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def pdf_bytes(pages: list[list[Placed]]) -> bytes:
    """A valid PDF 1.4 file (xref table and trailer) of these pages."""
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog = add(b"")  # filled in below
    pages_id = add(b"")
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    kids = []
    for lines in pages:
        stream = "\n".join(
            f"BT /F1 {line.size:g} Tf {line.x:g} {line.y:g} Td ({_escape(line.text)}) Tj ET" for line in lines
        ).encode("cp1252")
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        kids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %d %d] /Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>"
                % (pages_id, PAGE_WIDTH, PAGE_HEIGHT, font, content)
            )
        )
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id
    objects[pages_id - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % kid for kid in kids),
        len(kids),
    )
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, catalog, xref)
    return bytes(out)


def expected_text(blocks: list[tuple[str, str]]) -> str:
    """What the reader should give back: headings as `#` lines, paragraphs whole."""
    return "\n\n".join(("# " + text) if kind == "h" else text for kind, text in blocks)


__all__ = ["expected_text", "layout", "pdf_bytes", "with_running_lines"]
