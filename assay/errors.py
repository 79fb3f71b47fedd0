"""One error base for every error the toolkit raises on purpose.

An `AssayError` is a problem the user can fix (a config key, a missing file, a setting),
worded for them; the CLIs print it as one line. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class AssayError(Exception):
    """A problem the user can fix, with the file, record or key named in the message."""


class ConfigError(AssayError, ValueError):
    """A config problem, with the file and key named (`curate` and `train` raise this one)."""
