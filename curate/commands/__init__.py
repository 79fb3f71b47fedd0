"""The command groups of `curate` beyond the pipeline's own: `index`, `audit`, `review`.

Commands are the face of the toolkit: they may load the pipeline config and call any stage
or service; no stage imports them.
"""
