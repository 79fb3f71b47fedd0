"""The PII library: detect personal data and secrets, replace them by placeholders, keep the mapping.

Used by the redact stage, the export's residual re-scan and restore, and `curate audit`.
"""
