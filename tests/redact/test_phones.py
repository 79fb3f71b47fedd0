"""Which phone-number matches count as plausible in form (curate.services.pii.phones), without Presidio.

The recognizer itself runs in the engine (test_recognizers.py: drama ranges, 555 numbers,
prose digit runs left alone); this pins the shape rule it applies to phonenumbers' POSSIBLE
matches, which on its own also matches `800-53`, `2013-04-30` and groups of card digits.
"""

from __future__ import annotations

import pytest

from curate.services.pii.phones import plausible_form


@pytest.mark.parametrize(
    "raw",
    ["+44 7700 900123", "07700 900123", "01632 960123", "0491 570 156", "+61 491 570 006",
     "(555) 555-0199", "202-555-0147", "1-800-555-0100", "555-0123", "555.0123"],
)
def test_plausible(raw: str) -> None:
    assert plausible_form(raw)


@pytest.mark.parametrize(
    "raw", ["800-53", "2013-04-30", "2 (3) 90", "1.2.3.4", "1111 1111 1112", "1234 5698 7654 33", "4111", "155-0123", "+44 20"]
)
def test_not_plausible(raw: str) -> None:
    assert not plausible_form(raw)
