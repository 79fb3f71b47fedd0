"""Token counting for chunk budgets, as token start offsets over a whole document.

A tokenizer here returns the character offsets where tokens start (a sorted int64
array). The number of tokens of any span is then two binary searches, so the chunker
never re-tokenises pieces of text (no quadratic work). Three kinds:

- `words` (default, fast): a token is a run of letters/digits/underscore, or any other
  single non-space character (`re` equivalent: `[^\\W]+|[^\\w\\s]`), computed with numpy
  over the code points. Roughly 1.3 tokens per English word, close to BPE counts.
- `tiktoken:<encoding>`: an OpenAI BPE encoding (the encoding file must be available
  locally: tiktoken caches it in TIKTOKEN_CACHE_DIR).
- a path to a Hugging Face `tokenizer.json` (the `tokenizers` library): the student
  model's own tokenizer, for exact budgets.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, Protocol

import numpy as np

WORD_TOKEN = re.compile(r"\w+|[^\w\s]")  # the reference definition of the `words` tokenizer

_SPACE_CODEPOINTS = [9, 10, 11, 12, 13, 28, 29, 30, 31, 32, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
SPACE, WORD, OTHER = 0, 1, 2


def _class_table() -> np.ndarray:
    """Character class of every code point of the Basic Multilingual Plane (one gather per text)."""
    cp = np.arange(0x10000, dtype=np.uint32)
    ascii_word = ((cp >= 48) & (cp <= 57)) | ((cp >= 65) & (cp <= 90)) | ((cp >= 97) & (cp <= 122)) | (cp == 95)
    # beyond ASCII: letters of any script count as word characters; Latin-1 and general
    # punctuation, symbols and CJK punctuation do not (an approximation of `\w`)
    punct_block = (
        (cp < 0xC0) | (cp == 0xD7) | (cp == 0xF7) | ((cp >= 0x2000) & (cp <= 0x2BFF)) | ((cp >= 0x3000) & (cp <= 0x303F))
        | ((cp >= 0xFE30) & (cp <= 0xFE4F)) | ((cp >= 0xFF00) & (cp <= 0xFF0F))
    )
    table = np.full(0x10000, OTHER, dtype=np.uint8)
    table[ascii_word | ~punct_block] = WORD
    table[_SPACE_CODEPOINTS] = SPACE
    return table


_CLASSES = _class_table()
_LATIN1_TABLE = _CLASSES[:256].tobytes()  # a bytes.translate table (ASCII text uses its first half)


class Tokenizer(Protocol):
    name: str

    def starts(self, text: str) -> np.ndarray: ...


class WordsTokenizer:
    """Letters/digits runs and single punctuation marks, vectorised with numpy."""

    name = "words"

    def starts(self, text: str) -> np.ndarray:
        if not text:
            return np.zeros(0, dtype=np.int64)
        if text.isascii():  # one byte per character, classified by bytes.translate (a C loop)
            classes = np.frombuffer(text.encode("ascii").translate(_LATIN1_TABLE), dtype=np.uint8)
        else:
            units = text.encode("utf-16-le")
            # numpy gathers with an intp index several times faster than with a narrower one
            if len(units) == 2 * len(text):  # all in the BMP: one code unit per character
                classes = _CLASSES[np.frombuffer(units, dtype=np.uint16).astype(np.intp)]
            else:  # beyond the BMP: emoji and symbols are OTHER, the rest letters
                cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
                classes = _CLASSES[np.minimum(cp, 0xFFFF).astype(np.intp)]
                astral = cp > 0xFFFF
                classes[astral] = np.where((cp[astral] >= 0x1F000) & (cp[astral] <= 0x1FAFF), OTHER, WORD)
        word = classes == WORD
        start = classes == OTHER
        start[0] |= word[0]
        start[1:] |= word[1:] & ~word[:-1]
        return np.flatnonzero(start).astype(np.int64, copy=False)


class TiktokenTokenizer:
    def __init__(self, encoding: Any, name: str | None = None):
        self.encoding = encoding
        self.name = name or f"tiktoken:{encoding.name}"

    def starts(self, text: str) -> np.ndarray:
        tokens = self.encoding.encode_ordinary(text)
        _, offsets = self.encoding.decode_with_offsets(tokens)
        return np.unique(np.asarray(offsets, dtype=np.int64))


class HFTokenizer:
    def __init__(self, tokenizer: Any, name: str):
        self.tokenizer = tokenizer
        self.name = name

    def starts(self, text: str) -> np.ndarray:
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        return np.unique(np.asarray([start for start, end in encoding.offsets if end > start], dtype=np.int64))


@functools.lru_cache(maxsize=8)
def get_tokenizer(spec: str, base_dir: str = ".") -> Tokenizer:
    """The tokenizer named by `chunk.tokenizer` (cached per process)."""
    if spec == "words":
        return WordsTokenizer()
    if spec.startswith("tiktoken:"):
        import tiktoken

        return TiktokenTokenizer(tiktoken.get_encoding(spec.split(":", 1)[1]), spec)
    path = Path(spec).expanduser()
    if not path.is_absolute():
        path = Path(base_dir) / path
    if path.suffix == ".json" or path.is_file():
        from tokenizers import Tokenizer as HFTok

        return HFTokenizer(HFTok.from_file(str(path)), spec)
    raise ValueError(f'chunk.tokenizer: {spec!r} is not "words", "tiktoken:<encoding>" or a tokenizer.json file')
