"""Decoding text files with a policy a user can predict, and a check of the detector's choice.

1. An encoding forced for the file (`ingest.encoding`, one for all or per glob) is used as is.
2. A byte order mark decides: UTF-32 and UTF-16 (LE/BE), UTF-8.
3. Strict UTF-8 (the common case, and exact). UTF-16 without a BOM is recognised by its
   zero bytes; other data with NUL bytes is binary.
4. Otherwise charset-normalizer proposes candidates, and we *check* them rather than trust its
   first pick (it decodes Latin-1 French as cp1250, "accès" -> "accčs", and Spanish as johab):
   the language of the text is recognised from its ASCII-only function words (the same in
   every single-byte encoding), and each candidate is scored by how many of its non-ASCII
   letters belong to that language's alphabet, minus symbols stuck inside words ("za¿ó³æ").
   Without a recognised language, the best-fitting alphabet or script counts. Ties go to
   Western code pages (cp1252, then Latin-1), then to charset-normalizer's order.
5. A decode that stays ambiguous (a runner-up with different text scores as well, or nothing
   fits well) is kept but flagged: `Decoded.uncertain` names the chosen and runner-up
   encodings, and the reader turns it into an `encoding_uncertain` row.

Optionally (`ingest.fix_mojibake`), UTF-8 text that was double-encoded somewhere upstream
("cafÃ©") is repaired with ftfy's `fix_encoding`.
"""

from __future__ import annotations

import codecs
import fnmatch
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePath

from curate.ingest import errors as E
from curate.ingest.errors import IngestError

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# C0 controls other than \t \n \r \f, DEL and C1 controls: in a text file they mean binary
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
_SAMPLE = 8192
_SCORE_SAMPLE = 400_000  # characters scored per candidate: enough to tell, bounded on big files
_TIE = 0.02
WESTERN = ("cp1252", "latin_1", "iso8859_15")

# Letters beyond ASCII of each language written in the Latin script. With the ASCII function
# words below, they tell which single-byte code page turned the bytes into the language's letters.
_ALPHABETS = {
    "fr": "àâæçéèêëîïôœùûüÿ",
    "de": "äöüß",
    "es": "áéíñóúü",
    "pt": "áàâãçéêíóôõú",
    "it": "àèéìíîòóùú",
    "ca": "àçéèíïòóúü",
    "nl": "áéëïóöüè",
    "da": "æøåéó",
    "no": "æøåéóô",
    "sv": "åäöé",
    "fi": "äöåšž",
    "is": "áðéíóúýþæö",
    "pl": "ąćęłńóśźż",
    "cs": "áčďéěíňóřšťúůýž",
    "sk": "áäčďéíĺľňóôŕšťúýž",
    "hu": "áéíóöőúüű",
    "ro": "ăâîșțşţ",
    "hr": "čćđšž",
    "sl": "čšž",
    "tr": "çğıöşüâî",
    "lt": "ąčęėįšųūž",
    "lv": "āčēģīķļņšūž",
    "et": "äõöüšž",
}
_WESTERN_LANGS = ("fr", "de", "es", "pt", "it", "ca", "nl", "da", "no", "sv", "fi", "is")
_ALPHABETS["en"] = "".join(sorted(set("".join(_ALPHABETS[lang] for lang in _WESTERN_LANGS))))
_FUNCTION_WORDS = {
    "en": "the and of to is are for with that this be by on not or from which",
    "fr": "le la les des et est une pour que qui dans sont ne pas du au sur par avec ce",
    "de": "der die das und ist nicht mit den von zu ein eine sich auf dem des auch werden",
    "es": "el la los las de y que en por para con una es se del no al como",
    "pt": "os as de e que em para com uma nao se do da dos das no por ao",
    "it": "il lo la gli le di che per con una sono non del della nel alla",
    "ca": "el la els les de i que per amb una es del dels al en",
    "nl": "de het een en van is dat op te zijn met voor niet die aan",
    "da": "og det er at en til som med for af den ikke de har",
    "no": "og det er at en til som med for av den ikke de har",
    "sv": "och det att en som med for av den inte de har till",
    "fi": "ja on ei se etta tai kun mutta ovat joka",
    "pl": "i w na nie do to jest z co jak przez dla po od sa",
    "cs": "a v se na je to o s jako pro do by k ze",
    "sk": "a v sa na je to o s ako pre do by k zo",
    "hu": "a az hogy nem is egy meg de van vagy mint",
    "ro": "si de la in cu pe un o nu care sunt mai din pentru",
    "hr": "i u je na se za da od su kao",
    "tr": "ve bir bu ile de da icin olarak",
}
_WORDS = {lang: frozenset(words.split()) for lang, words in _FUNCTION_WORDS.items()}
# scripts other than Latin: ranges of code points, for texts without a recognised language
_SCRIPTS: dict[str, tuple[tuple[int, int], ...]] = {
    "ja": ((0x3000, 0x30FF), (0x4E00, 0x9FFF), (0xFF00, 0xFF60), (0x3400, 0x4DBF)),
    "zh": ((0x3000, 0x303F), (0x4E00, 0x9FFF), (0xFF00, 0xFF60), (0x3400, 0x4DBF)),
    "ko": ((0xAC00, 0xD7AF), (0x1100, 0x11FF), (0x3130, 0x318F), (0x3000, 0x303F), (0x4E00, 0x9FFF), (0xFF00, 0xFF60)),
    "cyrillic": ((0x0400, 0x04FF),),
    "greek": ((0x0370, 0x03FF),),
    "hebrew": ((0x0590, 0x05FF),),
    "arabic": ((0x0600, 0x06FF),),
    "thai": ((0x0E00, 0x0E7F),),
}
_GENERAL_PUNCT = (0x2000, 0x206F)  # dashes, quotes, ellipsis, bullets: neutral in any script
_NEUTRAL = "€£¥©®°·«»§±×¿¡ºª\u00a0"  # symbols and marks at home in any Latin-script language
_ASCII_WORD = re.compile(r"[A-Za-z]+")
# a symbol (not a letter, not an apostrophe or a dot) from the Latin-1 supplement between two
# letters: "za¿ó³æ" is Polish read as cp1252
_SYMBOL_IN_WORD = re.compile(r"(?<=[^\W\d_])[\u00a1-\u00b6\u00b8-\u00bf\u00d7\u00f7](?=[^\W\d_])")


@dataclass(frozen=True)
class Decoded:
    text: str
    encoding: str
    uncertain: str | None = None  # the warning message when the choice is not clear
    runner_up: str | None = None
    fixed_mojibake: bool = False


def forced_encoding(setting: str | dict[str, str] | None, source: str) -> str | None:
    """`ingest.encoding`: one encoding for every text file, or the first glob that matches."""
    if setting is None or isinstance(setting, str):
        return setting
    name = PurePath(source).name
    for pattern, encoding in setting.items():
        if fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(source, pattern):
            return encoding
    return None


def decode(
    data: bytes, source: str, encoding: str | None = None, *, fix_mojibake: bool = False, declared: str | None = None
) -> Decoded:
    """Decode a text file's bytes by the policy above. Raises IngestError for bad input.

    `declared` is an encoding the file names itself (an HTML `<meta charset>`): tried after
    UTF-8, before detection."""
    if not data.strip():
        raise IngestError(E.EMPTY_FILE, f"{source}: the file is empty")
    if encoding:
        try:
            return Decoded(data.decode(encoding), codecs.lookup(encoding).name)
        except (UnicodeDecodeError, LookupError) as error:
            raise IngestError(E.UNDECODABLE_TEXT, f"{source}: not valid {encoding}: {error}") from None
    for bom, name in _BOMS:
        if data.startswith(bom):
            try:
                return Decoded(data[len(bom):].decode(name), name)
            except UnicodeDecodeError as error:
                raise IngestError(E.UNDECODABLE_TEXT, f"{source}: byte order mark says {name} but: {error}") from None
    sample = data[:_SAMPLE]
    if b"\x00" in sample:
        utf16 = _utf16_without_bom(data)
        if utf16 is None:
            raise IngestError(
                E.BINARY_CONTENT,
                f"{source}: contains NUL bytes, so it is binary data, not text (wrong file extension?)",
            )
        return _checked(utf16, source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        if declared:
            try:
                return _checked(Decoded(data.decode(declared), codecs.lookup(declared).name), source)
            except (UnicodeDecodeError, LookupError):
                pass  # a wrong declaration: detect instead
        return _checked(_detect(data, source), source)
    if fix_mojibake:
        import ftfy

        fixed = ftfy.fix_encoding(text)
        if fixed != text:
            return _checked(Decoded(fixed, "utf-8", fixed_mojibake=True), source)
    return _checked(Decoded(text, "utf-8"), source)


def _checked(decoded: Decoded, source: str) -> Decoded:
    sample = decoded.text[:_SAMPLE]
    if len(_CONTROL.findall(sample)) > 0.01 * max(1, len(sample)):
        raise IngestError(
            E.BINARY_CONTENT, f"{source}: decoded as {decoded.encoding} but full of control characters: binary data"
        )
    return decoded


def _utf16_without_bom(data: bytes) -> Decoded | None:
    """ASCII-heavy UTF-16 has a zero byte in every other position: LE at odd, BE at even ones."""
    sample = data[: _SAMPLE - _SAMPLE % 2]
    odd, even = sample[1::2].count(0), sample[0::2].count(0)
    half = max(1, len(sample) // 2)
    for zeros, other, name in ((odd, even, "utf-16-le"), (even, odd, "utf-16-be")):
        if zeros > 0.3 * half and other < 0.05 * half:
            try:
                return Decoded(data.decode(name), name)
            except UnicodeDecodeError:
                return None
    return None


def _languages(text: str) -> tuple[str, ...]:
    """Languages whose ASCII function words occur (the most frequent, and those with at least
    half its hits): close languages share words, so their alphabets are tried together."""
    words = [w.lower() for w in _ASCII_WORD.findall(text[:_SCORE_SAMPLE])]
    if not words:
        return ()
    counts = Counter(words)
    hits = {lang: sum(counts[w] for w in vocab) for lang, vocab in _WORDS.items()}
    best = max(hits.values())
    if best < 3 or best < 0.02 * len(words):
        return ()
    return tuple(lang for lang, n in hits.items() if n >= 0.5 * best)


def _fit(text: str, languages: tuple[str, ...]) -> float:
    """How plausible a candidate decode is: the share of its non-ASCII characters that belong
    to one alphabet of the recognised languages (or, without one, to any alphabet or script),
    less charset-normalizer's mess ratio (odd case changes, accents in odd places) and
    symbols stuck inside words."""
    from charset_normalizer.md import mess_ratio

    sample = text[:_SCORE_SAMPLE]
    chars = Counter(ch for ch in sample if ord(ch) > 127)
    for ch in list(chars):
        if _GENERAL_PUNCT[0] <= ord(ch) <= _GENERAL_PUNCT[1] or ch in _NEUTRAL:
            del chars[ch]
    total = sum(chars.values())
    mess = mess_ratio(sample, maximum_threshold=1.0)
    if total == 0:
        return 1.0 - mess
    letters: Counter[str] = Counter()
    for ch, n in chars.items():
        letters[unicodedata.normalize("NFC", ch.lower())] += n
    symbols = len(_SYMBOL_IN_WORD.findall(sample))
    if languages:
        alphabets = [_ALPHABETS[lang] for lang in languages]
    else:
        alphabets = [alphabet for lang, alphabet in _ALPHABETS.items() if lang != "en"]
    fits = [sum(n for ch, n in letters.items() if ch in alphabet) / total for alphabet in alphabets]
    if not languages:
        for ranges in _SCRIPTS.values():
            fits.append(sum(n for ch, n in chars.items() if any(a <= ord(ch) <= b for a, b in ranges)) / total)
    return max(fits) - 5 * symbols / total - mess


def _detect(data: bytes, source: str) -> Decoded:
    from charset_normalizer import from_bytes

    proposals = [match.encoding for match in list(from_bytes(data))[:8]]
    names = list(dict.fromkeys([*proposals, *WESTERN, "cp1250"]))
    candidates: list[tuple[str, str]] = []  # (encoding, text), distinct texts only
    seen: dict[str, int] = {}
    for name in names:
        try:
            text = data.decode(name)
        except (UnicodeDecodeError, LookupError):
            continue
        if len(_CONTROL.findall(text[:_SAMPLE])) > 0.01 * max(1, len(text[:_SAMPLE])):
            continue  # e.g. Latin-1 turning cp1252's quotes into C1 controls
        if text in seen:  # same text: keep the preferred (Western) name for it
            index = seen[text]
            if name in WESTERN and candidates[index][0] not in WESTERN:
                candidates[index] = (name, text)
            continue
        seen[text] = len(candidates)
        candidates.append((name, text))
    if not candidates:
        raise IngestError(
            E.BINARY_CONTENT,
            f"{source}: no text encoding fits these bytes; it looks like binary data under a text extension",
        )
    languages = _languages(candidates[0][1])
    order = {name: i for i, name in enumerate(names)}

    def rank(item: tuple[str, str]) -> tuple[float, int, int]:
        name, text = item
        return (-round(_fit(text, languages), 2), 0 if name in WESTERN else 1, order[name])

    scored = sorted(candidates, key=rank)
    best_name, best_text = scored[0]
    best_fit = _fit(best_text, languages)
    if len(scored) == 1:
        return Decoded(best_text, best_name)
    runner_name, runner_text = scored[1]
    runner_fit = _fit(runner_text, languages)
    if best_fit - runner_fit > _TIE and best_fit >= 0.9:
        return Decoded(best_text, best_name, runner_up=runner_name)
    why = (
        f"{runner_name} fits as well ({runner_fit:.2f} vs {best_fit:.2f})"
        if best_fit - runner_fit <= _TIE
        else f"no candidate fits well (best {best_fit:.2f})"
    )
    message = (
        f"{source}: encoding uncertain: decoded as {best_name}, runner-up {runner_name}; {why}. "
        f"Check the text, and set ingest.encoding for this file if it is wrong"
    )
    return Decoded(best_text, best_name, uncertain=message, runner_up=runner_name)
