"""generate stage package."""
