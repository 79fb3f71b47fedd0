"""Decoding policy: every non-UTF-8 file decodes correctly or says it is unsure; BOMs go."""

from __future__ import annotations

from pathlib import Path

import pytest

from curate.ingest import errors as E
from curate.ingest.chunker import chunk_text
from curate.ingest.config import ChunkConfig, IngestConfig
from curate.ingest.encoding import decode, forced_encoding
from curate.ingest.normalize import normalize_text
from curate.ingest.readers import ReadResult, format_of, reader_for
from curate.ingest.tokenize import WordsTokenizer

FRENCH = (
    "Les privilèges d'accès sont revus chaque trimestre. Le propriétaire vérifie les comptes inactifs, "
    "à la fin du mois, et retire les droits qui ne sont plus nécessaires."
)
SPANISH = "Los privilegios de acceso se revisan cada trimestre. ¿Quién decide? El señor García, que es el dueño del sistema."
ITALIAN = "I privilegi di accesso sono rivisti ogni trimestre. Il proprietario verifica gli account inattivi, perché è così."
DANISH = "Adgangsrettigheder gennemgås hvert kvartal. Ejeren kontrollerer inaktive konti og fjerner rettigheder, der ikke længere er nødvendige på øen i år."
SMART_QUOTES = "The owner said \u201cno exceptions\u201d \u2014 it\u2019s the policy\u2026 A badge costs 5 \u20ac and it is for the staff."
POLISH = "Prawa dostępu są przeglądane co kwartał. Właściciel sprawdza nieaktywne konta i usuwa uprawnienia, które nie są już potrzebne."
CZECH = "Přístupová práva se přezkoumávají každé čtvrtletí. Vlastník kontroluje neaktivní účty a odebírá oprávnění, která již nejsou potřebná."
HUNGARIAN = "A hozzáférési jogokat negyedévente felülvizsgálják, és a tulajdonos ellenőrzi az inaktív fiókokat, hogy nem is egy árvíztűrő tükörfúrógép."
RUSSIAN = "Права доступа пересматриваются каждый квартал владельцем системы."
JAPANESE = "アクセス権は四半期ごとに見直されます。所有者が確認します。"
GERMAN = "Zugriffsrechte werden vierteljährlich überprüft. Größere Änderungen genehmigt der Eigentümer."


def read(path: Path, cfg: IngestConfig | None = None) -> ReadResult:
    fmt = format_of(path)
    assert fmt is not None
    return reader_for(fmt)(path, path.name, cfg or IngestConfig())


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        (FRENCH, "latin-1"),
        (FRENCH, "cp1252"),
        (SPANISH, "latin-1"),
        (ITALIAN, "cp1252"),
        (DANISH, "latin-1"),
        (GERMAN, "latin-1"),
        (SMART_QUOTES, "cp1252"),
        (POLISH, "cp1250"),
        (POLISH, "iso-8859-2"),
        (CZECH, "cp1250"),
        (HUNGARIAN, "cp1250"),
        (RUSSIAN, "cp1251"),
        (GERMAN, "utf-16-le"),  # no BOM: recognised by its zero bytes
        (GERMAN, "utf-16-be"),
        (GERMAN, "utf-16"),  # with a BOM
        (GERMAN, "utf-32"),
    ],
)
def test_decodes_correctly_and_surely(text: str, encoding: str) -> None:
    """Enough text to tell: the right decode, and no warning. (charset-normalizer alone picks
    cp1250 for the French and johab for the Spanish.)"""
    decoded = decode(text.encode(encoding), "policy.txt")
    assert decoded.text == text, decoded.encoding
    assert decoded.uncertain is None


@pytest.mark.parametrize(
    ("text", "encoding"),
    [("accès privilèges", "latin-1"), (JAPANESE, "shift_jis"), (JAPANESE * 6, "shift_jis")],
)
def test_ambiguous_bytes_decode_right_or_say_so(tmp_path: Path, text: str, encoding: str) -> None:
    """Two words, or Shift-JIS bytes that are also valid Korean: never silent mojibake."""
    path = tmp_path / "note.txt"
    path.write_bytes(text.encode(encoding))
    result = read(path)
    document = result.documents[0]
    if document.text != text:
        assert [reason for _, reason, _ in result.errors] == [E.ENCODING_UNCERTAIN]
    for _, reason, message in result.errors:
        assert reason == E.ENCODING_UNCERTAIN
        assert document.metadata["encoding"] in message and str(document.metadata["encoding_runner_up"]) in message
        assert "ingest.encoding" in message
    assert document.text == text  # with these inputs the policy also picks right


def test_western_tie_goes_to_cp1252_and_is_flagged(tmp_path: Path) -> None:
    path = tmp_path / "short.txt"
    path.write_bytes("accès privilèges".encode("latin-1"))
    result = read(path)
    assert result.documents[0].text == "accès privilèges"
    assert result.documents[0].metadata["encoding"] == "cp1252"
    [(source, reason, message)] = result.errors
    assert (source, reason) == ("short.txt", E.ENCODING_UNCERTAIN)
    assert "decoded as cp1252, runner-up cp1250" in message


def test_uncertain_is_a_row_of_the_ingest_stage(tmp_path: Path) -> None:
    from curate.ingest.stages import read_one

    path = tmp_path / "short.md"
    path.write_bytes("# Accès\n\naccès privilèges".encode("latin-1"))
    docs, errors = read_one(path, "short.md", "h", "markdown", IngestConfig())
    assert len(docs) == 1 and docs[0]["text"].startswith("# Accès")
    assert [e["reason"] for e in errors] == [E.ENCODING_UNCERTAIN]


def test_encoding_override_per_glob(tmp_path: Path) -> None:
    (tmp_path / "legacy").mkdir()
    path = tmp_path / "legacy" / "short.txt"
    path.write_bytes("zażółć gęślą".encode("cp1250"))
    cfg = IngestConfig(encoding={"legacy/*.txt": "cp1250", "*.csv": "utf-8"})
    assert forced_encoding(cfg.encoding, "legacy/short.txt") == "cp1250"
    assert forced_encoding(cfg.encoding, "other/short.md") is None
    result = reader_for("text")(path, "legacy/short.txt", cfg)
    assert result.documents[0].text == "zażółć gęślą" and result.errors == []
    assert result.documents[0].metadata["encoding"] == "cp1250"


def test_html_meta_charset_is_honoured(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_bytes('<html><head><meta charset="windows-1250"></head><body><p>zażółć gęślą</p></body></html>'.encode("cp1250"))
    result = read(path)
    assert result.documents[0].text == "zażółć gęślą" and result.errors == []


def test_mojibake_repaired_when_configured(tmp_path: Path) -> None:
    pytest.importorskip("ftfy")
    path = tmp_path / "double.txt"
    path.write_bytes(FRENCH.encode("utf-8").decode("latin-1").encode("utf-8"))  # "accÃ¨s"
    assert "Ã¨" in read(path).documents[0].text  # off by default: the text is what the file says
    document = read(path, IngestConfig(fix_mojibake=True)).documents[0]
    assert document.text == FRENCH and document.metadata["mojibake_fixed"] is True


def test_boms_removed_everywhere_and_headings_found(tmp_path: Path) -> None:
    """Thirty files concatenated with their BOMs and CRLF line ends: every section is a heading."""
    parts = [f"\ufeff# Section {i}\r\n\r\nBody text of section {i}, long enough to be a chunk.\r\n" for i in range(30)]
    path = tmp_path / "joined.md"
    path.write_bytes("".join(parts).encode("utf-8"))
    document = read(path).documents[0]
    assert "\ufeff" not in document.text and "\r" not in document.text
    spans = chunk_text(document.text, WordsTokenizer(), ChunkConfig(max_tokens=64, min_tokens=0), headed=True)
    assert [s.heading_path for s in spans] == [(f"Section {i}",) for i in range(30)]
    assert normalize_text("a\ufeffb") == "ab"


def test_utf16_bom_crlf_headings(tmp_path: Path) -> None:
    path = tmp_path / "windows.md"
    path.write_bytes("# Zugriff\r\n\r\nÜberprüfung.\r\n\r\n## Löschung\r\n\r\nNach DIN 66399.\r\n".encode("utf-16"))
    document = read(path).documents[0]
    spans = chunk_text(document.text, WordsTokenizer(), ChunkConfig(max_tokens=64, min_tokens=0), headed=True)
    assert [s.heading_path for s in spans] == [("Zugriff",), ("Zugriff", "Löschung")]


def test_binary_with_nul_bytes_is_still_refused() -> None:
    from curate.ingest.errors import IngestError

    with pytest.raises(IngestError) as caught:
        decode(bytes(range(256)) * 20, "blob.txt")
    assert caught.value.reason == E.BINARY_CONTENT
