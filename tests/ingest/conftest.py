"""Fixtures of the ingestion tests: well-formed and malformed input files, made on the fly."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def pdf_bytes(shared_corpus: Path) -> bytes:
    return (shared_corpus / "formats" / "ir.pdf").read_bytes()


def make_scanned_pdf(source_pdf: Path) -> bytes:
    """A 'scanned' PDF: page 1 of a real PDF rendered to pixels, placed as an image only."""
    import pypdfium2 as pdfium

    source = pdfium.PdfDocument(str(source_pdf))
    width, height = source[0].get_size()
    image = source[0].render(scale=1).to_pil()
    pdf = pdfium.PdfDocument.new()
    page = pdf.new_page(width, height)
    obj = pdfium.PdfImage.new(pdf)
    obj.set_bitmap(pdfium.PdfBitmap.from_pil(image))
    obj.set_matrix(pdfium.PdfMatrix().scale(width, height))
    page.insert_obj(obj)
    page.gen_content()
    buffer = io.BytesIO()
    pdf.save(buffer)
    return buffer.getvalue()


def make_encrypted_pdf(source_pdf: Path, password: str = "s3cret") -> bytes:
    """A real password-protected PDF (pypdf, AES-256), from the corpus PDF."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(str(source_pdf)))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="AES-256")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


MalformedFactory = Callable[[Path], tuple[Path, str]]


@pytest.fixture(scope="session")
def malformed_files(shared_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    """name -> (file, expected reason code), one per kind of bad input."""
    root = tmp_path_factory.mktemp("malformed")
    source_pdf = shared_corpus / "formats" / "ir.pdf"
    good_pdf = source_pdf.read_bytes()
    good_docx = (shared_corpus / "formats" / "ir.docx").read_bytes()
    cases: dict[str, tuple[str, bytes, str]] = {
        "corrupt_pdf": ("corrupt.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n", "pdf_corrupt"),
        "not_a_pdf": ("not-a-pdf.pdf", b"<html><body>this is a web page saved as .pdf</body></html>", "pdf_corrupt"),
        "truncated_pdf": ("truncated.pdf", good_pdf[: len(good_pdf) // 2], "pdf_truncated"),
        "encrypted_pdf": ("encrypted.pdf", make_encrypted_pdf(source_pdf), "pdf_encrypted"),
        "scanned_pdf": ("scanned.pdf", make_scanned_pdf(source_pdf), "pdf_no_text_layer"),
        "empty_txt": ("empty.txt", b"", "empty_file"),
        "blank_md": ("blank.md", b"  \n\n \r\n", "empty_file"),
        "empty_pdf": ("empty.pdf", b"", "empty_file"),
        "empty_docx": ("empty.docx", b"", "empty_file"),
        "binary_txt": ("binary.txt", good_pdf[:4096] + b"\x00\x01\x02" * 100, "binary_content"),
        "binary_md": ("image.md", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "binary_content"),
        "control_bytes_txt": ("terminal.txt", bytes([1, 2, 3, 4, 5, 6, 7, 8, 14, 15]) * 50 + b"ok", "binary_content"),
        "corrupt_docx": ("corrupt.docx", good_docx[: len(good_docx) // 3], "docx_corrupt"),
        "docx_not_zip": ("letter.docx", b"Dear client, this is plain text named .docx", "docx_corrupt"),
        "docx_missing_part": ("missing-part.docx", _docx_without_document_part(good_docx), "docx_corrupt"),
        "html_without_text": ("chrome.html", b"<html><body><nav>Home</nav><script>x()</script></body></html>", "no_text"),
    }
    out = {}
    for name, (filename, data, reason) in cases.items():
        path = root / filename
        path.write_bytes(data)
        out[name] = (path, reason)
    return out


def _docx_without_document_part(docx: bytes) -> bytes:
    source = zipfile.ZipFile(io.BytesIO(docx))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for item in source.infolist():
            if item.filename != "word/document.xml":
                target.writestr(item, source.read(item))
    return buffer.getvalue()


@pytest.fixture
def records_dir(tmp_path: Path) -> Path:
    """A JSONL file with good and bad lines, and a CSV with an id column."""
    lines = [
        json.dumps({"id": "r1", "text": "Badges open only the doors a role requires.", "team": "facilities"}),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"id": "r4", "body": "no text column"}),
        json.dumps({"id": "r5", "text": "   "}),
        "",
        json.dumps({"id": "r7", "text": "Backups are kept offline for 35 days."}),
    ]
    (tmp_path / "records.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "records.csv").write_text(
        'id,text,owner\nc1,"Access is reviewed quarterly, by the owner.",it\nc2,"Laptops use full-disk encryption.",sec\n',
        encoding="utf-8",
    )
    return tmp_path
