"""OCR (ingest.ocr: auto): a page the test renders from known text, scanned to pixels only,
comes back through ocrmypdf + Tesseract; scored by character error rate against the text."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from rapidfuzz.distance import Levenshtein

from curate.ingest import errors as E
from curate.ingest.config import IngestConfig
from curate.ingest.ocr import missing_parts
from curate.ingest.readers.pdf import read_pdf
from tests.ingest.pdfgen import layout, pdf_bytes

KNOWN = [
    ("h", "Visitor access"),
    (
        "p",
        "Visitors sign in at the front desk and wear a badge at all times. Escorts stay with "
        "visitors in secure areas. The desk keeps the visitor log for two years.",
    ),
]


def scanned(pdf: bytes, dpi: int = 300) -> bytes:
    """Each page rendered to pixels and placed back as an image only: a scan, no text layer."""
    import pypdfium2 as pdfium

    source = pdfium.PdfDocument(pdf)
    out = pdfium.PdfDocument.new()
    for index in range(len(source)):
        width, height = source[index].get_size()
        image = source[index].render(scale=dpi / 72).to_pil().convert("L")
        page = out.new_page(width, height)
        picture = pdfium.PdfImage.new(out)
        picture.set_bitmap(pdfium.PdfBitmap.from_pil(image))
        picture.set_matrix(pdfium.PdfMatrix().scale(width, height))
        page.insert_obj(picture)
        page.gen_content()
    buffer = io.BytesIO()
    out.save(buffer)
    return buffer.getvalue()


def test_without_ocr_the_error_says_how_to_enable_it(tmp_path: Path) -> None:
    from curate.ingest.stages import read_one

    path = tmp_path / "scan.pdf"
    path.write_bytes(scanned(pdf_bytes(layout(KNOWN).pages), dpi=100))
    _, errors = read_one(path, "scan.pdf", "h", "pdf", IngestConfig())
    assert [e["reason"] for e in errors] == [E.PDF_NO_TEXT_LAYER]
    assert "ingest.ocr: auto" in errors[0]["message"] and "tesseract-ocr" in errors[0]["message"]


@pytest.mark.slow
@pytest.mark.skipif(bool(missing_parts()), reason=f"OCR needs {', '.join(missing_parts())}")
def test_scanned_page_is_ocred_with_a_low_character_error_rate(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    text_pdf = layout(KNOWN)
    path.write_bytes(scanned(pdf_bytes(text_pdf.pages)))
    began = time.perf_counter()
    document = read_pdf(path, "scan.pdf", IngestConfig(ocr="auto")).documents[0]
    seconds = time.perf_counter() - began
    assert document.metadata["ocr_pages"] == [1]
    reference = " ".join(text for _, text in KNOWN)
    got = " ".join(document.text.replace("#", " ").split())
    cer = Levenshtein.distance(got, reference) / len(reference)
    print(f"OCR of one 300 dpi page: CER {cer:.3f} in {seconds:.1f} s")
    assert cer < 0.03, (cer, got)


@pytest.mark.slow
@pytest.mark.skipif(bool(missing_parts()), reason=f"OCR needs {', '.join(missing_parts())}")
def test_only_pages_without_text_are_ocred(tmp_path: Path) -> None:
    import pypdfium2 as pdfium

    typed = pdf_bytes(layout([("p", "This page was typed and has its own text layer, so OCR leaves it alone.")]).pages)
    scan = scanned(pdf_bytes(layout(KNOWN).pages))
    merged = pdfium.PdfDocument(typed)
    merged.import_pages(pdfium.PdfDocument(scan))
    buffer = io.BytesIO()
    merged.save(buffer)
    path = tmp_path / "mixed.pdf"
    path.write_bytes(buffer.getvalue())
    document = read_pdf(path, "mixed.pdf", IngestConfig(ocr="auto")).documents[0]
    assert document.metadata["ocr_pages"] == [2]
    assert document.text.startswith("This page was typed and has its own text layer, so OCR leaves it alone.")
    assert "visitor log" in document.text
