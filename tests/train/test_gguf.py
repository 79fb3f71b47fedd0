"""GGUF export without a model: types, tools found or named, the Modelfile, the comparison.

The round trip on a real model is tests/train/test_gguf_roundtrip.py (slow).
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest

from train.gguf import GGUFExportError, gguf_name, normalise_type
from train.gguf_check import compare, held_out
from train.gguf_tools import (
    LLAMA_CPP_PYTHON,
    READY,
    RUNTIME_TARGETS,
    GGUFToolsMissing,
    _vendored_members,
    require_runtime,
    require_tools,
)
from train.modelfile import CHATML, LLAMA3, modelfile_text


def test_types_are_spelt_as_each_tool_takes_them() -> None:
    assert normalise_type("Q8_0") == "q8_0" and normalise_type("q4_k_m") == "Q4_K_M"
    assert gguf_name("q5_k_m") == "model-Q5_K_M.gguf"
    assert normalise_type("q4_1") == "Q4_1"  # legacy, through llama-quantize: near-lossless on our base (bench/gguf)
    with pytest.raises(GGUFExportError, match="choose one of"):
        normalise_type("q3")


def test_the_config_refuses_an_unknown_type() -> None:
    from train.config import ConfigError, parse_config

    assert parse_config({"gguf_outtype": "q4_k_m"}).gguf_outtype == "Q4_K_M"
    with pytest.raises(ConfigError, match="gguf_outtype"):
        parse_config({"gguf_outtype": "int4"})


@pytest.fixture
def no_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LLAMA_CPP_DIR", raising=False)
    monkeypatch.setenv("ASSAY_GGUF_TOOLS", str(tmp_path / "tools"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    return tmp_path / "tools" / LLAMA_CPP_PYTHON


def test_missing_tools_name_the_one_command(no_tools: Path) -> None:
    with pytest.raises(GGUFToolsMissing, match=r"run `make gguf-tools`"):
        require_tools(fetch=False)


def test_an_unbuilt_quantize_tool_names_the_one_command(no_tools: Path) -> None:
    (no_tools / "llama.cpp").mkdir(parents=True)
    (no_tools / "llama.cpp" / "convert_hf_to_gguf.py").write_text("")
    (no_tools / READY).write_text("{}")
    assert require_tools(fetch=False).converter.is_file()
    with pytest.raises(GGUFToolsMissing, match=r"llama-quantize .* run `make gguf-tools`"):
        require_tools(fetch=False, quantize=True)


def test_llama_cpps_runtime_is_found_when_built_and_named_when_not(no_tools: Path) -> None:
    tree = no_tools / "llama.cpp"
    (tree / "build" / "bin").mkdir(parents=True)
    (tree / "convert_hf_to_gguf.py").write_text("")
    (no_tools / READY).write_text("{}")
    with pytest.raises(GGUFToolsMissing, match=r"runtime is not built .* run `make gguf-runtime`"):
        require_runtime()
    for name in RUNTIME_TARGETS:
        (tree / "build" / "bin" / name).write_text("")
        (tree / "build" / "bin" / name).chmod(0o755)
    runtime = require_runtime()
    assert (runtime.completion.name, runtime.perplexity.name) == ("llama-completion", "llama-perplexity")


def test_train_export_reports_missing_tools_and_points_the_modelfile_at_merged(
    no_tools: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import train.export as export
    import train.gguf_tools as tools

    def offline(into: Path) -> Path:
        raise GGUFToolsMissing("could not download llama-cpp-python: no network. ... run `make gguf-tools`")

    monkeypatch.setattr(tools, "download_sdist", offline)
    info = export._gguf_step(tmp_path, tmp_path, {"data": str(tmp_path)}, "q8_0", strict=False)
    assert info["status"] == "missing" and "make gguf-tools" in info["reason"]
    with pytest.raises(GGUFToolsMissing):
        export._gguf_step(tmp_path, tmp_path, {"data": str(tmp_path)}, "q8_0", strict=True)


def test_only_the_vendored_tree_is_unpacked_without_its_test_vocabularies() -> None:
    prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name in ("llama_cpp/llama.py", "vendor/llama.cpp/convert_hf_to_gguf.py",
                     "vendor/llama.cpp/gguf-py/gguf/__init__.py", "vendor/llama.cpp/models/ggml-vocab.gguf"):
            info = tarfile.TarInfo(prefix + name)
            info.size = 1
            archive.addfile(info, io.BytesIO(b"x"))
    buffer.seek(0)
    with tarfile.open(fileobj=buffer) as archive:
        names = sorted(m.name for m in _vendored_members(archive))
    assert names == ["llama.cpp/convert_hf_to_gguf.py", "llama.cpp/gguf-py/gguf/__init__.py"]


class FakeTokenizer:
    def __init__(self, template: str, vocab: list[str], eos: str) -> None:
        self.chat_template, self.eos_token, self._vocab = template, eos, vocab

    def get_vocab(self) -> dict[str, int]:
        return {token: i for i, token in enumerate(self._vocab)}

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [self._vocab[i] for i in ids]


CHATML_JINJA = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3_JINJA = (
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def _go_render(template: str, system: str, messages: list[dict[str, str]]) -> str:
    """What Ollama renders for the two Go templates we write (if .System, range .Messages)."""
    system_part = re.search(r"\{\{- if \.System \}\}(.*?)\{\{ end \}\}", template, re.S)
    range_part = re.search(r"\{\{- range \.Messages \}\}(.*?)\{\{ end \}\}(.*)$", template, re.S)
    assert system_part and range_part
    out = system_part.group(1).replace("{{ .System }}", system) if system else ""
    for message in messages:
        out += range_part.group(1).replace("{{ .Role }}", message["role"]).replace("{{ .Content }}", message["content"])
    return out + range_part.group(2)


@pytest.mark.parametrize(("go", "jinja", "bos"), [(CHATML, CHATML_JINJA, ""), (LLAMA3, LLAMA3_JINJA, "<|begin_of_text|>")])
def test_the_go_templates_render_what_the_tokenizers_template_renders(go: str, jinja: str, bos: str) -> None:
    from jinja2 import Environment

    messages = [{"role": "user", "content": "Which family?"}, {"role": "assistant", "content": "Access Control"},
                {"role": "user", "content": "And this one?"}]
    system = "Name the control family."
    expected = Environment().from_string(jinja).render(
        messages=[{"role": "system", "content": system}, *messages], add_generation_prompt=True, bos_token=""
    )
    assert _go_render(go, system, messages) == expected
    assert bos == "" or bos not in go  # llama.cpp adds the bos token itself


def test_the_modelfile_takes_stops_from_the_tokenizer_and_parameters_from_the_config() -> None:
    tokenizer = FakeTokenizer(CHATML_JINJA, ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "a"], "<|im_end|>")
    text = modelfile_text("./model-q8_0.gguf", tokenizer, [2, 0], "Be brief.", 0.0, 512)
    lines = text.splitlines()
    assert lines[0] == "FROM ./model-q8_0.gguf"
    stops = [line for line in lines if line.startswith("PARAMETER stop")]
    assert stops == ['PARAMETER stop "<|im_end|>"', 'PARAMETER stop "<|endoftext|>"', 'PARAMETER stop "<|im_start|>"']
    assert "PARAMETER temperature 0" in lines and "PARAMETER num_ctx 512" in lines
    assert 'SYSTEM """Be brief."""' in lines and "TEMPLATE" in text


def test_an_unknown_chat_format_leaves_the_template_to_the_gguf_metadata() -> None:
    tokenizer = FakeTokenizer("{% for m in messages %}[{{ m.role }}] {{ m.content }}{% endfor %}", ["</s>", "x"], "</s>")
    text = modelfile_text("./merged", tokenizer, [], None, 0.7, 2048)
    assert "TEMPLATE" not in text.replace("# TEMPLATE", "") and 'PARAMETER stop "</s>"' in text
    assert "PARAMETER temperature 0.7" in text


def test_comparison_counts_agreement_and_the_exact_match_change() -> None:
    result = compare(["A", "B", "C", "D"], ["A", "B", "X", "D"], ["A", "Z", "C", "D"])
    assert result["n"] == 4 and result["agreement"]["estimate"] == 0.75
    assert result["exact_match_merged"]["estimate"] == 0.75 and result["exact_match_gguf"]["estimate"] == 0.5
    assert result["exact_match_change"]["estimate"] == -0.25
    assert result["differing_examples"] == [{"merged": "C", "gguf": "X", "margin": float("inf")}]
    near_tie = compare(["A", "C"], ["A", "X"], ["A", "C"], margins=[1.2, 0.02])
    assert near_tie["decided"]["n"] == 1 and near_tie["decided"]["agreement"]["estimate"] == 1.0


def test_held_out_prompts_end_before_the_answer(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]} for i in range(5)
    ]
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prompts, references = held_out(path, 3)
    assert prompts == [[{"role": "user", "content": f"q{i}"}] for i in range(3)] and references == ["a0", "a1", "a2"]


def test_a_byte_level_bpe_claiming_byte_fallback_is_relabelled_without_changing_its_tokens(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from train.base_models import repair_byte_level_bpe

    tokenizer = Tokenizer(models.BPE(byte_fallback=True))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.Sequence(
        [decoders.ByteFallback(), decoders.Fuse(), decoders.Replace("▁", " "), decoders.ByteLevel()]
    )
    corpus = ["The organization develops an audit policy.", "Incident response: détection ✅ 🦙 3.3 ▁x"] * 20
    tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    assert repair_byte_level_bpe(path) is True
    repaired = Tokenizer.from_file(str(path))
    data = json.loads(path.read_text())
    assert data["model"]["byte_fallback"] is False and data["decoder"]["type"] == "ByteLevel"
    for text in [*corpus[:2], "unseen ▁ text, 我想 😶\u200d🌫️"]:
        ids = tokenizer.encode(text).ids
        assert repaired.encode(text).ids == ids and repaired.decode(ids) == tokenizer.decode(ids)
    assert repair_byte_level_bpe(path) is False  # already plain: left alone
