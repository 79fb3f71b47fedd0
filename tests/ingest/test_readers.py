"""Readers: the same text from every format, normalisation, and every kind of bad input."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

from curate.ingest import errors as E
from curate.ingest.config import IngestConfig
from curate.ingest.errors import IngestError
from curate.ingest.normalize import decode_bytes, normalize_text
from curate.ingest.readers import ReadResult, format_of, reader_for

CFG = IngestConfig()


def read(path: Path, cfg: IngestConfig = CFG) -> ReadResult:
    fmt = format_of(path)
    assert fmt is not None
    return reader_for(fmt)(path, path.name, cfg)


def comparable(text: str) -> str:
    """Text with Markdown markup and layout removed: what a reader of the page sees."""
    text = re.sub(r"^#+ ", "", text, flags=re.MULTILINE).replace("**", "")
    text = re.sub(r"^\s*- ", "- ", text, flags=re.MULTILINE)
    return re.sub(r"\s+", " ", text).strip()


def section_texts(text: str, titles: list[str]) -> dict[str, str]:
    flat = comparable(text)
    out = {}
    position = 0
    for index, title in enumerate(titles):
        start = flat.index(title, position)
        end = flat.index(titles[index + 1], start + 1) if index + 1 < len(titles) else len(flat)
        out[title] = flat[start:end]
        position = start + 1
    return out


@pytest.mark.parametrize("family", ["ir", "ac", "pe"])
def test_every_format_gives_the_same_section_text(shared_corpus: Path, family: str) -> None:
    markdown = shared_corpus / "docs" / f"{family}.md"
    titles = re.findall(r"^## (.+)$", markdown.read_text(encoding="utf-8"), re.MULTILINE)
    assert len(titles) > 30
    reference = section_texts(read(markdown).documents[0].text, titles)
    others = sorted((shared_corpus / "formats").glob(f"{family}.*"))
    assert {p.suffix for p in others} >= {".docx", ".html"}
    for path in others:
        sections = section_texts(read(path).documents[0].text, titles)
        different = [t for t in titles if sections[t] != reference[t]]
        assert different == [], f"{path.name}: {len(different)} sections differ, first {different[:1]}"
    incident = section_texts(read(markdown).documents[0].text, titles).get("IR-4 Incident Handling")
    if family == "ir":
        assert incident is not None and "containment, eradication, and recovery" in incident


def test_html_and_docx_keep_headings_as_markdown(shared_corpus: Path) -> None:
    for name in ("ir.html", "ir.docx"):
        text = read(shared_corpus / "formats" / name).documents[0].text
        assert text.startswith("# IR: Incident Response\n\n## IR-1 Incident Response Policy and Procedures\n\n")
        assert "\n## IR-4 Incident Handling\n" in text


def test_pdf_keeps_page_spans(shared_corpus: Path) -> None:
    import pypdfium2 as pdfium

    path = shared_corpus / "formats" / "ir.pdf"
    document = read(path).documents[0]
    assert [p[0] for p in document.pages] == list(range(1, len(pdfium.PdfDocument(str(path))) + 1))
    previous_end = 0
    for _, start, end in document.pages:
        assert previous_end <= start < end <= len(document.text)
        previous_end = end
    page_one = document.text[document.pages[0][1]:document.pages[0][2]]
    assert page_one.startswith("# IR: Incident Response\n\n## IR-1 Incident Response Policy and Procedures\n\nControl.")
    assert "\r" not in document.text and "\ufffe" not in document.text
    # page 1 ends mid-sentence: page 2 goes on in the same paragraph, one space between
    (_, _, end_one), (_, start_two, _) = document.pages[:2]
    assert document.text[end_one:start_two] == " " and document.text[start_two].islower()
    assert document.metadata["headings_from"] == "outline"


def test_demo_html_drops_chrome_and_keeps_lists(repo_root: Path) -> None:
    result = read(repo_root / "data" / "demo" / "docs" / "incident-response-plan.html")
    text = result.documents[0].text
    assert result.documents[0].title == "Incident Response Plan - Northwind Freight"
    assert "dataLayer" not in text and "Intranet home" not in text and "Internal use only" not in text
    assert "font-family" not in text
    assert "## Severity Levels\n\nEvery security incident" in text
    assert "\n- SEV-1 (critical): ransomware" in text and "\n- SEV-2 (high)" in text


def test_demo_docx_has_table_lists_and_headings(repo_root: Path) -> None:
    text = read(repo_root / "data" / "demo" / "docs" / "data-protection-standard.docx").documents[0].text
    assert text.startswith("# Northwind Freight Data Protection Standard\n")
    assert "| Level | Examples | Handling |\n| Public | Published tariffs, press releases | No restrictions |" in text
    assert "\n- Laptops and driver tablets use full-disk encryption" in text
    assert "\n1. Shipment records and proofs of delivery: 7 years" in text and "\n4. Driver telematics data: 13 months." in text
    # the table comes where it was written: after the classification paragraph, before encryption
    assert text.index("four levels") < text.index("| Level |") < text.index("## Encryption Requirements")


def test_normalisation_bom_crlf_nfc(tmp_path: Path) -> None:
    path = tmp_path / "notes.md"
    path.write_bytes(b"\xef\xbb\xbf# Caf" + "e\u0301".encode() + b"\r\n\r\nLine one  \r\nLine two\rend\r\n\r\n\r\n\r\nlast")
    text = read(path).documents[0].text
    assert text == "# Caf\u00e9\n\nLine one\nLine two\nend\n\nlast"
    assert unicodedata.is_normalized("NFC", text)


@pytest.mark.parametrize(
    ("encoding", "sample"),
    [
        ("cp1252", "Le café coûte 3 € — « très cher » pour l'équipe de sécurité à Rotterdam. " * 4),
        ("latin-1", "Größe der Datenträger: maßgeblich für die Löschung nach DIN 66399. " * 4),
        ("utf-16", "Zugriffsrechte werden vierteljährlich überprüft. " * 4),
        ("shift_jis", "アクセス権は四半期ごとに見直されます。" * 6),
    ],
)
def test_non_utf8_text_is_detected(tmp_path: Path, encoding: str, sample: str) -> None:
    path = tmp_path / "policy.txt"
    path.write_bytes(sample.encode(encoding))
    document = read(path).documents[0]
    assert document.text == normalize_text(sample)


def test_forced_encoding(tmp_path: Path) -> None:
    path = tmp_path / "policy.txt"
    path.write_bytes("Größe".encode("cp1252"))
    assert read(path, IngestConfig(encoding="cp1252")).documents[0].text == "Größe"
    with pytest.raises(IngestError) as caught:
        read(path, IngestConfig(encoding="utf-8"))
    assert caught.value.reason == E.UNDECODABLE_TEXT


def test_every_malformed_case_has_its_reason(malformed_files: dict[str, tuple[Path, str]]) -> None:
    from curate.ingest.stages import read_one

    assert set(malformed_files) >= {
        "corrupt_pdf", "truncated_pdf", "encrypted_pdf", "scanned_pdf", "empty_txt", "binary_txt", "corrupt_docx",
    }
    for name, (path, reason) in malformed_files.items():
        fmt = format_of(path)
        assert fmt is not None
        docs, errors = read_one(path, str(path), "hash", fmt, CFG)
        assert docs == [], name
        assert [e["reason"] for e in errors] == [reason], f"{name}: {errors}"
        assert str(path) in errors[0]["message"], name
        assert errors[0]["reason"] in E.ALL_REASONS


def test_reason_messages_say_what_to_do(malformed_files: dict[str, tuple[Path, str]]) -> None:
    from curate.ingest.stages import read_one

    path, _ = malformed_files["encrypted_pdf"]
    _, errors = read_one(path, "encrypted.pdf", "h", "pdf", CFG)
    assert "password" in errors[0]["message"]
    path, _ = malformed_files["scanned_pdf"]
    _, errors = read_one(path, "scanned.pdf", "h", "pdf", CFG)
    assert "OCR" in errors[0]["message"]


def test_decode_refuses_binary() -> None:
    with pytest.raises(IngestError) as caught:
        decode_bytes(b"abc\x00def" * 10, "x.txt")
    assert caught.value.reason == E.BINARY_CONTENT


def test_jsonl_records_and_bad_lines(records_dir: Path) -> None:
    result = read(records_dir / "records.jsonl", IngestConfig(id_column="id"))
    assert [d.record_key for d in result.documents] == ["r1", "r7"]
    assert result.documents[0].metadata == {"team": "facilities"}
    reasons = {where: reason for where, reason, _ in result.errors}
    assert reasons == {
        "records.jsonl:2": E.RECORD_INVALID_JSON,
        "records.jsonl:3": E.RECORD_NOT_OBJECT,
        "records.jsonl:4": E.RECORD_MISSING_TEXT,
        "records.jsonl:5": E.RECORD_EMPTY_TEXT,
    }
    assert all("line" in message or "field" in message for _, _, message in result.errors)


def test_jsonl_default_keys_are_line_numbers(records_dir: Path) -> None:
    result = read(records_dir / "records.jsonl")
    assert [d.record_key for d in result.documents] == ["line-1", "line-7"]


def test_csv_records(records_dir: Path) -> None:
    result = read(records_dir / "records.csv", IngestConfig(id_column="id", title_column="owner"))
    assert [(d.record_key, d.title, d.text) for d in result.documents] == [
        ("c1", "it", "Access is reviewed quarterly, by the owner."),
        ("c2", "sec", "Laptops use full-disk encryption."),
    ]
    assert result.errors == []


def test_csv_ragged_rows_are_named(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("id,text\n1,first row\n2,second,extra,fields\n3,third row\n", encoding="utf-8")
    result = read(path)
    assert [d.text for d in result.documents] == ["first row", "third row"]
    assert [(where, reason) for where, reason, _ in result.errors] == [("ragged.csv:row 2", E.CSV_BAD_ROW)]


def test_csv_without_text_column(tmp_path: Path) -> None:
    path = tmp_path / "wrong.csv"
    path.write_text("id,body\n1,hello\n", encoding="utf-8")
    result = read(path)
    assert result.documents == []
    assert [reason for _, reason, _ in result.errors] == [E.RECORD_MISSING_TEXT]


def test_html_structure_nested_lists_tables_and_inline_text() -> None:
    from curate.ingest.readers.html import html_to_text

    markup = """<html><head><title>T</title></head><body>
    <header>Site banner</header>
    <article><h2>Access  <em>reviews</em></h2>
    <p>Owners review <a href="#">accounts</a>
       every quarter.<br>Second line.</p>
    <ul><li>Users<ul><li>monthly for admins</li></ul></li><li>Services</li></ul>
    <table><tr><th>Level</th><th>When</th></tr><tr><td>Admin</td><td>Monthly</td></tr></table>
    <aside>Related links</aside><div>Loose text <b>bold</b></div></article></body></html>"""
    text, title = html_to_text(markup)
    assert title == "T"
    assert text == (
        "## Access reviews\n\nOwners review accounts every quarter.\nSecond line.\n\n"
        "- Users\n  - monthly for admins\n- Services\n\n| Level | When |\n| Admin | Monthly |\n\nLoose text bold"
    )


def test_docx_nested_list_levels(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_heading("Rules", level=2)
    document.add_paragraph("Top item", style="List Bullet")
    document.add_paragraph("Nested item", style="List Bullet 2")
    document.add_paragraph("First step", style="List Number")
    document.add_paragraph("Second step", style="List Number")
    document.add_paragraph("Closing paragraph.")
    path = tmp_path / "rules.docx"
    document.save(str(path))
    assert read(path).documents[0].text == (
        "## Rules\n\n- Top item\n  - Nested item\n1. First step\n2. Second step\n\nClosing paragraph."
    )
