"""What `curate` and `train` share without `train` importing `curate`.

The error base (`errors`), reading a YAML config file and naming what is wrong in it
(`config_files`, `config_keys`), atomic writes (`files`) and the CLI help fix (`cli_help`).
It imports nothing of the project's, so every package may import it.
"""
