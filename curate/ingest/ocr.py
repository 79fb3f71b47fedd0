"""OCR of PDF pages without a text layer, through ocrmypdf and Tesseract (optional).

`ingest.ocr: auto` sends the pages of a PDF that have no text layer (scans) to ocrmypdf,
which runs Tesseract on them and writes a PDF with an invisible text layer; the PDF reader
then reads those pages like any other. Pages that have text are left alone (`skip_text`),
and the document records which pages were OCRed (`metadata.ocr_pages`).

Needs the `ocr` extra (`pip install 'assay[ocr]'`: ocrmypdf) and, from the system, the
`tesseract` and `gs` binaries (Debian/Ubuntu: `apt-get install tesseract-ocr ghostscript`,
plus `tesseract-ocr-<lang>` for languages other than English). Costs a few seconds per page on
one core (rendering at the scan's resolution and Tesseract's LSTM recogniser); see docs/ingest.md.
"""

from __future__ import annotations

import io
import logging
import shutil

from curate.ingest import errors as E
from curate.ingest.config import IngestConfig
from curate.ingest.errors import IngestError

HOW_TO_ENABLE = (
    "set ingest.ocr: auto, install the `ocr` extra (ocrmypdf) and the Tesseract and Ghostscript "
    "binaries (Debian: apt-get install tesseract-ocr ghostscript)"
)


def missing_parts() -> list[str]:
    """What OCR needs and this machine lacks (empty: OCR can run)."""
    missing = []
    try:
        import ocrmypdf  # noqa: F401
    except ImportError:
        missing.append("the Python package ocrmypdf (the `ocr` extra)")
    for binary, package in (("tesseract", "tesseract-ocr"), ("gs", "ghostscript")):
        if shutil.which(binary) is None:
            missing.append(f"the `{binary}` program (Debian package {package})")
    return missing


def ocr_pdf(data: bytes, source: str, pages: list[int], cfg: IngestConfig) -> bytes:
    """The PDF with a text layer added to `pages` (1-based) by Tesseract. Raises IngestError
    (pdf_no_text_layer) naming what is missing when OCR cannot run."""
    missing = missing_parts()
    if missing:
        raise IngestError(
            E.PDF_NO_TEXT_LAYER,
            f"{source}: page(s) {_ranges(pages)} have no text layer and OCR is not available: "
            f"missing {', '.join(missing)}",
        )
    import ocrmypdf

    logging.getLogger("ocrmypdf").setLevel(logging.ERROR)
    output = io.BytesIO()
    try:
        ocrmypdf.ocr(
            io.BytesIO(data),
            output,
            language=cfg.ocr_language,
            pages=_ranges(pages),
            skip_text=True,
            output_type="pdf",
            optimize=0,
            jobs=1,
            progress_bar=False,
        )
    except ocrmypdf.exceptions.ExitCodeException as error:
        raise IngestError(E.OCR_FAILED, f"{source}: OCR of page(s) {_ranges(pages)} failed ({type(error).__name__}: {error})") from None
    return output.getvalue()


def _ranges(pages: list[int]) -> str:
    return ",".join(str(page) for page in pages)
