"""Shared services below the stages: the teacher, text similarity, personal-data detection."""
