"""filters stage package."""
