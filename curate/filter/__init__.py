"""filter stage package: schema, consistency, grounding, audit, refine, judge, dedup."""
