"""PDF via pypdfium2 (PDFium, Chrome's PDF engine; Apache/BSD licence): the text layer,
page by page, with each page's span in the document text kept in `Document.pages`.

Bad PDFs are told apart so that the person fixing them knows what to do: encrypted
(ask for an unprotected copy), truncated (the download or copy was cut off), corrupt
(not a PDF or broken structure), and no text layer (a scan: it needs OCR first).
"""

from __future__ import annotations

import re
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from curate.ingest import errors as E
from curate.ingest.config import IngestConfig
from curate.ingest.errors import IngestError
from curate.ingest.normalize import normalize_text
from curate.ingest.readers import Extracted, ReadResult

_EOF_WINDOW = 1024  # the PDF trailer's %%EOF sits in the last 1 KiB (ISO 32000, Acrobat rule)
# PDFium marks a hyphen that ended a line as U+FFFE (older builds: U+0002) and drops the
# line break: it was a real "-" in the page content, so it is kept as one.
_LINE_END_HYPHEN = re.compile(r"[\x02\ufffe]")
_SOFT_HYPHEN = re.compile(r"\u00ad\n?")
_SPACE_RUNS = re.compile(r"[ \t]{2,}")


def _page_text(raw: str) -> str:
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    text = _LINE_END_HYPHEN.sub("-", text)
    text = _SOFT_HYPHEN.sub("", text)
    return _SPACE_RUNS.sub(" ", normalize_text(text))


def read_pdf(path: Path, source: str, cfg: IngestConfig) -> ReadResult:
    data = path.read_bytes()
    if not data.strip():
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
    try:
        if truncated:
            raise IngestError(
                E.PDF_TRUNCATED,
                f"{source}: the PDF has no %%EOF trailer at its end: the file was cut off "
                f"(PDFium recovered {len(document)} page(s); refusing partial text)",
            )
        metadata = document.get_metadata_dict(skip_empty=True)
        parts: list[str] = []
        pages: list[tuple[int, int, int]] = []
        offset = 0
        empty_pages: list[int] = []
        for index in range(len(document)):
            page = document[index]
            try:
                textpage = page.get_textpage()
                text = _page_text(textpage.get_text_range())
                textpage.close()
            except pdfium.PdfiumError as error:
                raise IngestError(E.PDF_CORRUPT, f"{source}: page {index + 1} cannot be read ({error})") from None
            finally:
                page.close()
            if not text.strip():
                empty_pages.append(index + 1)
                continue
            if parts:
                parts.append("\n\n")
                offset += 2
            parts.append(text)
            pages.append((index + 1, offset, offset + len(text)))
            offset += len(text)
        n_pages = len(document)
    finally:
        document.close()
    if not pages:
        raise IngestError(
            E.PDF_NO_TEXT_LAYER,
            f"{source}: none of its {n_pages} page(s) has a text layer (a scanned PDF?): run OCR first",
        )
    meta: dict[str, object] = {"n_pages": n_pages}
    if empty_pages:
        meta["pages_without_text"] = empty_pages
    title = str(metadata.get("Title") or "") or None
    return ReadResult([Extracted(text="".join(parts), title=title, pages=pages, metadata=meta)])
