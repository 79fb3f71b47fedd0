"""Phone numbers that are plausible in form, whether or not they are assigned.

Presidio's PhoneRecognizer keeps only numbers that `phonenumbers` calls VALID: assigned
ranges. A number in a range reserved for fiction or testing (the UK's Ofcom drama ranges
such as `+44 7700 900123`, `01632 960123`; US `555-01xx`; Australia's `0491 570 xxx`) is not,
and went to the teacher as written, though in a client's document it may stand for a real
one, or be one that was reassigned. This recognizer runs `phonenumbers`' matcher at the
POSSIBLE leniency (a length that region's numbers can have) and keeps the matches shaped
like a full number, which short digit runs in prose (`800-53`, `2013-04-30`, `AC-2 (3)`)
are not:

- an international number (`+` and 8 or more digits);
- a national number of 10 or 11 digits: North American (`(555) 555-0199`, `202-555-0147`) or
  with a trunk prefix (`07700 900123`, `0113 496 0123`);
- a North American local number `NXX-XXXX` (`555-0123`): seven digits, one separator.
"""

from __future__ import annotations

import re
from typing import Any

_NANP_LOCAL = re.compile(r"[2-9]\d{2}[-.]\d{4}")
_NANP_FULL = re.compile(r"(?:\+?1[-. ]?)?\(?[2-9]\d{2}\)?[-. ]?\d{3}[-. ]\d{4}")
SCORE = 0.5  # above the default threshold (0.4), below the validated numbers' score


def plausible_form(raw: str) -> bool:
    digits = sum(c.isdigit() for c in raw)
    raw = raw.strip()
    if raw.startswith("+"):
        return digits >= 8
    if 10 <= digits <= 11:
        return raw.startswith(("0", "(")) or bool(_NANP_FULL.fullmatch(raw))
    return digits == 7 and bool(_NANP_LOCAL.fullmatch(raw))


def plausible_phone_recognizer(regions: list[str], supported_language: str = "en") -> Any:
    """A Presidio recognizer of PHONE_NUMBER (`PlausiblePhoneRecognizer`) for the numbers above."""
    import phonenumbers

    from curate.services.pii.presidio import EntityRecognizer, RecognizerResult

    class PlausiblePhoneRecognizer(EntityRecognizer):
        def load(self) -> None:
            return None

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
            if entities and "PHONE_NUMBER" not in entities:
                return []
            spans: set[tuple[int, int]] = set()
            for region in regions:
                for match in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
                    if plausible_form(match.raw_string):
                        spans.add((match.start, match.end))
            return [
                RecognizerResult(
                    entity_type="PHONE_NUMBER",
                    start=start,
                    end=end,
                    score=SCORE,
                    recognition_metadata={
                        RecognizerResult.RECOGNIZER_NAME_KEY: "PlausiblePhoneRecognizer",
                        RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                    },
                )
                for start, end in sorted(spans)
            ]

    return PlausiblePhoneRecognizer(
        supported_entities=["PHONE_NUMBER"], name="PlausiblePhoneRecognizer", supported_language=supported_language
    )
