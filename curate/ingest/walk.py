"""Files under a folder that match include/exclude globs, in a stable order."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterator
from pathlib import Path


def matches(patterns: tuple[str, ...], name: str, rel: str) -> bool:
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(rel, p) for p in patterns)


def iter_files(root: Path, include: tuple[str, ...], exclude: tuple[str, ...]) -> Iterator[Path]:
    """Sorted walk; hidden files and folders and Office lock files (`~$...`) are skipped."""
    for folder, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith((".", "~$")):
                continue
            rel = (Path(folder) / name).relative_to(root).as_posix()
            if matches(include, name.lower(), rel) and not matches(exclude, name, rel):
                yield Path(folder) / name
