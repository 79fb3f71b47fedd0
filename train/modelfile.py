"""The Ollama Modelfile of a run: the real GGUF file, the tokenizer's chat format and stops.

Ollama templates are Go templates, not the tokenizer's Jinja, so there is no general
translation; the chat formats whose markers the tokenizer's template carries (ChatML, Llama 3)
get their Go template, checked against the Jinja rendering in the tests. Any other template
gets no TEMPLATE line: Ollama then takes the format from the GGUF file's
``tokenizer.chat_template``, which the converter writes. The stop tokens are the tokenizer's
end-of-sequence token, the generation config's end-of-sequence ids and the format's
end-of-turn markers, each only when the vocabulary has it. Temperature and context length
come from the training config (``serve_temperature``, ``serve_num_ctx`` or ``max_seq_len``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHATML = (
    "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n"
)
LLAMA3 = (
    "{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
#: marker in the Jinja template -> (name, Go template, end-of-turn tokens)
FORMATS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "<|im_start|>": ("chatml", CHATML, ("<|im_end|>", "<|im_start|>")),
    "<|start_header_id|>": ("llama3", LLAMA3, ("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>")),
}


def chat_format(chat_template: str | None) -> tuple[str, str, tuple[str, ...]] | None:
    for marker, fmt in FORMATS.items():
        if chat_template and marker in chat_template:
            return fmt
    return None


def stop_tokens(tokenizer: Any, eos_ids: list[int], turn_ends: tuple[str, ...]) -> list[str]:
    """eos token, generation-config eos ids and the format's turn ends, those in the vocabulary."""
    vocab = tokenizer.get_vocab()
    candidates = [tokenizer.eos_token, *tokenizer.convert_ids_to_tokens(eos_ids), *turn_ends]
    stops: list[str] = []
    for token in candidates:
        if token and token in vocab and token not in stops:
            stops.append(token)
    return stops


def generation_eos_ids(model_dir: Path) -> list[int]:
    """The ``eos_token_id`` of ``generation_config.json`` (an int or a list), if any."""
    import json

    path = model_dir / "generation_config.json"
    if not path.is_file():
        return []
    value = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
    return [value] if isinstance(value, int) else [int(v) for v in value or []]


def _quoted(text: str) -> str:
    return '"""' + text.replace('"""', "'''") + '"""'


def modelfile_text(
    source: str, tokenizer: Any, eos_ids: list[int], system: str | None, temperature: float, num_ctx: int
) -> str:
    """``source``: ``./model-q8_0.gguf`` or ``./merged``."""
    fmt = chat_format(tokenizer.chat_template)
    lines = [f"FROM {source}"]
    if fmt is None:
        lines.append("# TEMPLATE: none written; Ollama reads the chat template from the GGUF metadata")
    else:
        lines.append(f"# chat format: {fmt[0]} (the tokenizer's template)")
        lines.append(f"TEMPLATE {_quoted(fmt[1])}")
    for stop in stop_tokens(tokenizer, eos_ids, fmt[2] if fmt else ()):
        lines.append(f'PARAMETER stop "{stop}"')
    lines.append(f"PARAMETER temperature {temperature:g}")
    lines.append(f"PARAMETER num_ctx {num_ctx}")
    if system:
        lines.append(f"SYSTEM {_quoted(system)}")
    return "\n".join(lines) + "\n"


def write_modelfile(
    run_dir: Path, model_dir: Path, source: str, system: str | None, temperature: float, num_ctx: int
) -> Path:
    """``run_dir/Modelfile`` for the model in ``model_dir`` (its tokenizer and generation config)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    text = modelfile_text(source, tokenizer, generation_eos_ids(model_dir), system, temperature, num_ctx)
    path = run_dir / "Modelfile"
    path.write_text(text, encoding="utf-8")
    return path
