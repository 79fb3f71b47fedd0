"""Text normalisation shared by every reader: decoding, BOM, line endings, NFC.

Decoding tries strict UTF-8 first (the common case, and exact), honours UTF-16/32 byte
order marks, and otherwise asks charset-normalizer for the most plausible encoding.
Bytes that look binary (NUL bytes, or no plausible text encoding) are refused rather
than decoded into mojibake.
"""

from __future__ import annotations

import codecs
import re
import unicodedata

from curate.ingest import errors as E
from curate.ingest.errors import IngestError

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# C0 controls other than \t \n \r, DEL and C1 controls: in a text file they mean binary
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
_TRAILING_SPACE = re.compile(r"[ \t\u00a0]+(?=\n)")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")
_SPACES = re.compile(r"[ \t\n\r\f\v\u00a0]+")
_BINARY_SAMPLE = 8192


def decode_bytes(data: bytes, source: str, encoding: str | None = None) -> tuple[str, str]:
    """Decode a text file's bytes; returns (text, encoding). Raises IngestError."""
    if not data.strip():
        raise IngestError(E.EMPTY_FILE, f"{source}: the file is empty")
    if encoding:
        try:
            return data.decode(encoding), encoding
        except (UnicodeDecodeError, LookupError) as error:
            raise IngestError(E.UNDECODABLE_TEXT, f"{source}: not valid {encoding}: {error}") from None
    for bom, name in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom):].decode(name), name
            except UnicodeDecodeError as error:
                raise IngestError(E.UNDECODABLE_TEXT, f"{source}: byte order mark says {name} but: {error}") from None
    sample = data[:_BINARY_SAMPLE]
    if b"\x00" in sample:
        raise IngestError(
            E.BINARY_CONTENT,
            f"{source}: contains NUL bytes, so it is binary data, not text (wrong file extension?)",
        )
    try:
        text, name = data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        from charset_normalizer import from_bytes

        best = from_bytes(data).best()
        if best is None:
            raise IngestError(
                E.BINARY_CONTENT,
                f"{source}: no text encoding fits these bytes; it looks like binary data under a text extension",
            ) from None
        text, name = str(best), best.encoding
    if _control_ratio(text) > 0.01:
        raise IngestError(E.BINARY_CONTENT, f"{source}: decoded as {name} but full of control characters: binary data")
    return text, name


def _control_ratio(text: str) -> float:
    sample = text[:_BINARY_SAMPLE]
    return len(_CONTROL.findall(sample)) / max(1, len(sample))


def normalize_text(text: str) -> str:
    """BOM removed, CRLF/CR -> LF, Unicode NFC, no trailing spaces, at most one blank line."""
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n\n").replace("\x00", "")
    text = unicodedata.normalize("NFC", text)
    text = _TRAILING_SPACE.sub("", text)
    text = _MANY_BLANK_LINES.sub("\n\n", text)
    return text.strip("\n ")



def collapse_spaces(text: str) -> str:
    """Runs of whitespace (no-break spaces too) as one space, trimmed: inline text of markup."""
    return _SPACES.sub(" ", text).strip()
