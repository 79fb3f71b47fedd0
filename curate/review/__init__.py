"""review stage package."""
