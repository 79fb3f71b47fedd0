"""Reason codes of bad input, and the exception readers raise for them.

Every code is stable (tests, dashboards and `curate status` group by it); the message
names the file (and line or row for records) and says what a person can do about it.
"""

from __future__ import annotations

from assay.errors import AssayError

# discovery
PATH_NOT_FOUND = "path_not_found"
FILE_TOO_LARGE = "file_too_large"
UNSUPPORTED_FORMAT = "unsupported_format"
NO_INPUT = "no_input"  # the paths hold no file to read: the run exits 2
# any file
EMPTY_FILE = "empty_file"
BINARY_CONTENT = "binary_content"
UNDECODABLE_TEXT = "undecodable_text"
ENCODING_UNCERTAIN = "encoding_uncertain"  # a warning: the document is kept, a person should check it
NO_TEXT = "no_text"
READ_FAILED = "read_failed"
# PDF
PDF_ENCRYPTED = "pdf_encrypted"
PDF_CORRUPT = "pdf_corrupt"
PDF_TRUNCATED = "pdf_truncated"
PDF_NO_TEXT_LAYER = "pdf_no_text_layer"
OCR_FAILED = "ocr_failed"
# DOCX
DOCX_CORRUPT = "docx_corrupt"
# JSONL / CSV records
RECORD_INVALID_JSON = "record_invalid_json"
RECORD_NOT_OBJECT = "record_not_object"
RECORD_MISSING_TEXT = "record_missing_text"
RECORD_EMPTY_TEXT = "record_empty_text"
CSV_CORRUPT = "csv_corrupt"
CSV_BAD_ROW = "csv_bad_row"

ALL_REASONS = frozenset(
    value for name, value in dict(globals()).items() if name.isupper() and isinstance(value, str)
)


class IngestError(AssayError):
    """A file (or record) that cannot become a document, with a stable reason code."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
