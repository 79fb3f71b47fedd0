"""Text normalisation shared by every reader: BOMs, line endings, NFC, spaces.

Decoding is `curate.ingest.encoding` (its policy is documented there); this module applies
a file's settings to it and turns its notes into metadata and warning rows.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import numpy as np

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
    # each step only where needed, found by tests that run at memory speed: one character
    # with `in`; pairs and runs by numpy (`in` with a longer needle costs 1-2 ns a character
    # on text beyond Latin-1, each)
    if "\ufeff" in text:
        text = text.replace("\ufeff", "")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\f" in text:
        text = text.replace("\f", "\n\n")
    if "\x00" in text:
        text = text.replace("\x00", "")
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    trailing_space, blank_lines = _line_end_tests(text)
    if trailing_space:
        text = _TRAILING_SPACE.sub("", text)
        blank_lines = "\n\n\n" in text
    if blank_lines:
        text = _MANY_BLANK_LINES.sub("\n\n", text)
    return text.strip("\n ")


def _line_end_tests(text: str) -> tuple[bool, bool]:
    """(does a space, tab or no-break space end a line, are there three newlines in a row),
    from the code units with numpy: a few vector passes instead of four substring searches."""
    if len(text) < 2:
        return False, False
    if text.isascii():
        units = np.frombuffer(text.encode("ascii"), dtype=np.uint8)
    else:  # no surrogate is any of these characters: code units answer for characters
        units = np.frombuffer(text.encode("utf-16-le", "surrogatepass"), dtype=np.uint16)
    newline = units == 10
    blank = (units == 32) | (units == 9) | (units == 0xA0)
    return bool((blank[:-1] & newline[1:]).any()), bool((newline[:-2] & newline[1:-1] & newline[2:]).any())


def collapse_spaces(text: str) -> str:
    """Runs of whitespace (no-break spaces too) as one space, trimmed: inline text of markup.
    (str.split is several times faster than a regex substitution on short strings.)"""
    return " ".join(text.split())
