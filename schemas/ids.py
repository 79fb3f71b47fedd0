"""Content-derived identifiers.

Row ids come from content (hashes, offsets), never from row positions, so a stage gives
the same ids whatever the sharding, batch size or worker count.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import polars as pl
import xxhash


def content_id(*parts: Any) -> str:
    """A stable 64-bit hex id over the given parts (strings, numbers, JSON-able values)."""
    hasher = xxhash.xxh3_64()
    for part in parts:
        encoded = part if isinstance(part, bytes) else _canonical(part).encode("utf-8")
        hasher.update(len(encoded).to_bytes(8, "little"))
        hasher.update(encoded)
    return hasher.hexdigest()


def content_ids(*columns: pl.Series) -> list[str]:
    """`content_id(*row)` of each row of the given equal-length columns (strings or
    integers, no nulls): the same values. The framed message of a row (each part: its
    UTF-8 length as 8 little-endian bytes, then its bytes) is built by polars for all rows
    at once where every part is under 128 bytes (its length bytes are then one character
    and seven NULs); longer parts are framed row by row. One xxh3 call per row."""
    texts = [column if column.dtype == pl.String else column.cast(pl.String) for column in columns]
    if not texts or texts[0].len() == 0:
        return []
    digest = xxhash.xxh3_64_hexdigest
    lengths = [text.str.len_bytes() for text in texts]
    if all((length < 128).all() for length in lengths):
        pieces: list[pl.Series] = []
        for text, length in zip(texts, lengths, strict=True):
            pieces += [length.replace_strict(_SHORT_FRAMES, return_dtype=pl.String), text]
        messages = pl.select(pl.concat_str(pieces)).to_series().cast(pl.Binary)
        return [digest(message) for message in messages.to_list()]
    blobs = zip(*(text.cast(pl.Binary).to_list() for text in texts), strict=True)
    return [digest(b"".join(len(part).to_bytes(8, "little") + part for part in row)) for row in blobs]


_SHORT_FRAMES = {n: chr(n) + "\0" * 7 for n in range(128)}


def sha256_hex(data: bytes | str) -> str:
    """A cryptographic digest, used where a hash is evidence (payload audit, cache keys)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return hashlib.sha256(raw).hexdigest()


def file_sha256(path: str, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(block)
    return digest.hexdigest()


def _canonical(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
