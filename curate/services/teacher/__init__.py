"""The teacher service: one client over Claude, OpenAI-compatible servers and cassettes.

Used by generate, refine, the judge and train's judge; see `factory.open_teacher`.
"""
