"""Content-derived identifiers.

Row ids come from content (hashes, offsets), never from row positions, so a stage gives
the same ids whatever the sharding, batch size or worker count.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash


def content_id(*parts: Any) -> str:
    """A stable 64-bit hex id over the given parts (strings, numbers, JSON-able values)."""
    hasher = xxhash.xxh3_64()
    for part in parts:
        encoded = part if isinstance(part, bytes) else _canonical(part).encode("utf-8")
        hasher.update(len(encoded).to_bytes(8, "little"))
        hasher.update(encoded)
    return hasher.hexdigest()


def content_ids(*columns: Any) -> list[str]:
    """`content_id(*row)` of each row of the given columns (equal-length polars Series or
    pyarrow arrays of strings or integers; no nulls): the same values, with the framed
    messages (8-byte little-endian length, then the UTF-8 bytes, of each part) joined by
    pyarrow for all rows at once and one xxh3 call per row."""
    framed: list[pa.Array] = []
    for column in columns:
        array = column.to_arrow() if hasattr(column, "to_arrow") else column
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
            array = array.cast(pa.large_string())  # an integer's text is json.dumps's (_canonical)
        array = array.cast(pa.large_binary())
        lengths = np.asarray(pc.binary_length(array), dtype="<u8")
        prefix = pa.Array.from_buffers(pa.binary(8), len(array), [None, pa.py_buffer(lengths.tobytes())])
        framed += [prefix.cast(pa.large_binary()), array]
    if not framed or len(framed[0]) == 0:
        return []
    messages = pc.binary_join_element_wise(*framed, pa.scalar(b"", pa.large_binary()))
    digest = xxhash.xxh3_64_hexdigest
    return [digest(message) for message in messages.to_pylist()]


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
