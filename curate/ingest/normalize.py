"""Text normalisation shared by every reader: BOMs, line endings, NFC, spaces.

Decoding is `curate.ingest.encoding` (its policy is documented there); this module applies
a file's settings to it and turns its notes into metadata and warning rows.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from curate.ingest import errors as E
from curate.ingest.config import IngestConfig
from curate.ingest.encoding import Decoded, decode, forced_encoding

_TRAILING_SPACE = re.compile(r"[ \t\u00a0]+(?=\n)")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


def decode_bytes(data: bytes, source: str, encoding: str | None = None) -> tuple[str, str]:
    """Decode a text file's bytes; returns (text, encoding). Raises IngestError."""
    decoded = decode(data, source, encoding)
    return decoded.text, decoded.encoding


def read_text_file(path: Path, source: str, cfg: IngestConfig, declared: str | None = None) -> Decoded:
    """A text file decoded by the policy of `curate.ingest.encoding`, with this file's settings."""
    return decode(
        path.read_bytes(),
        source,
        forced_encoding(cfg.encoding, source),
        fix_mojibake=cfg.fix_mojibake,
        declared=declared,
    )


def encoding_notes(decoded: Decoded, source: str) -> tuple[dict[str, object], list[tuple[str, str, str]]]:
    """(metadata, warning rows) of a decode: the encoding, its runner-up, an uncertain choice."""
    meta: dict[str, object] = {"encoding": decoded.encoding}
    if decoded.runner_up:
        meta["encoding_runner_up"] = decoded.runner_up
    if decoded.fixed_mojibake:
        meta["mojibake_fixed"] = True
    warnings = [(source, E.ENCODING_UNCERTAIN, decoded.uncertain)] if decoded.uncertain else []
    return meta, warnings


def normalize_text(text: str) -> str:
    """BOMs removed wherever they are (files concatenated with theirs), CRLF/CR -> LF, Unicode
    NFC, no trailing spaces, at most one blank line."""
    # each step only where needed: a substring test runs at memory speed, a regex pass does not
    for old, new in (("\ufeff", ""), ("\r\n", "\n"), ("\r", "\n"), ("\f", "\n\n"), ("\x00", "")):
        if old in text:
            text = text.replace(old, new)
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    if " \n" in text or "\t\n" in text or "\u00a0\n" in text:
        text = _TRAILING_SPACE.sub("", text)
    if "\n\n\n" in text:
        text = _MANY_BLANK_LINES.sub("\n\n", text)
    return text.strip("\n ")



def collapse_spaces(text: str) -> str:
    """Runs of whitespace (no-break spaces too) as one space, trimmed: inline text of markup.
    (str.split is several times faster than a regex substitution on short strings.)"""
    return " ".join(text.split())
