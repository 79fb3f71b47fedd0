"""The shape of a placeholder (`<EMAIL_ADDRESS_1>`), apart from the detector.

Reading or restoring a mapping needs only this pattern; importing it from `redactor` would
load Presidio and spaCy (tens of seconds on a loaded machine) for a regex.
"""

from __future__ import annotations

import re

PLACEHOLDER_RE = re.compile(r"<([A-Z][A-Z0-9_]*)_(\d+)>")
