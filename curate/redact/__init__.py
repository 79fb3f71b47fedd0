"""redact stage package."""
