"""The similarity library: MinHash, LSH banding, exact Jaccard, connected components, dedup.

Used by the filter stage's dedup, the dedup index and the dataset's split leakage check.
"""
