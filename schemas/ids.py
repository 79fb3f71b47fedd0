"""Content-derived identifiers.

Row ids come from content (hashes, offsets), never from row positions, so a stage gives
the same ids whatever the sharding, batch size or worker count.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import xxhash


def content_id(*parts: Any) -> str:
    """A stable 64-bit hex id over the given parts (strings, numbers, JSON-able values)."""
    hasher = xxhash.xxh3_64()
    for part in parts:
        encoded = part if isinstance(part, bytes) else _canonical(part).encode("utf-8")
        hasher.update(len(encoded).to_bytes(8, "little"))
        hasher.update(encoded)
    return hasher.hexdigest()


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
