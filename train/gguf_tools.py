"""llama.cpp's GGUF converter and quantize tool: fetched from PyPI, built once, cached.

Our machines reach PyPI but not GitHub. The source distribution of ``llama-cpp-python`` on
PyPI vendors a whole llama.cpp tree: ``convert_hf_to_gguf.py`` with its ``conversion``
package and ``gguf-py``, and the C++ sources of ``llama-quantize``. ``train gguf-tools`` (or
``make gguf-tools``) downloads that sdist with ``pip download --no-deps --no-binary :all:``
through the user's pip configuration, checks its sha256, keeps the llama.cpp tree (less its
test vocabularies and docs) in ``~/.cache/assay/gguf-tools/<version>/llama.cpp`` and builds
only the ``llama-quantize`` target there, CPU only. The converter alone is fetched on first
use by ``train run`` (a download, like the base model); the quantize tool is built only on
request, because compiling it takes minutes. ``make gguf-runtime`` adds llama.cpp's own
runtime (``llama-completion``, ``llama-perplexity``) from the same tree, to check a file against
llama.cpp's kernels rather than transformers' dequantising loader (bench/gguf/runtime.py).

``LLAMA_CPP_DIR`` still points at a llama.cpp checkout of the user's own, which then wins.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from assay.errors import AssayError
from train.base_models import pip_download, publish_folder, sha256_of

LLAMA_CPP_PYTHON = "0.3.36"
SDIST = f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
DEFAULT_ROOT = Path("~/.cache/assay/gguf-tools")
#: Written last into the version folder: a folder without it is an interrupted fetch.
READY = "ASSAY_GGUF_TOOLS_READY.json"
#: Parts of the vendored tree that neither the converter nor the build reads (75 MB of test
#: vocabularies, 38 MB of docs).
UNNEEDED = frozenset({"models", "docs", "media", "benches", "pocs"})
SETUP = "make gguf-tools"
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",  # one self-contained binary
    "-DGGML_CUDA=OFF",
    "-DGGML_OPENMP=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
    "-DLLAMA_BUILD_APP=OFF",
)


class GGUFToolsMissing(AssayError, RuntimeError):
    """The converter or the quantize tool is not there; the message names the one command."""


@dataclass(frozen=True)
class GGUFTools:
    """Where the converter (a llama.cpp source tree) and ``llama-quantize`` are."""

    llama_cpp: Path
    quantize: Path | None

    @property
    def converter(self) -> Path:
        return self.llama_cpp / "convert_hf_to_gguf.py"


def tools_dir(root: str | Path | None = None) -> Path:
    """``<root>/<version>``; the root is ``ASSAY_GGUF_TOOLS`` or ``~/.cache/assay/gguf-tools``."""
    base = root or os.environ.get("ASSAY_GGUF_TOOLS") or DEFAULT_ROOT
    return Path(base).expanduser() / LLAMA_CPP_PYTHON


def _built_quantize(llama_cpp: Path) -> Path | None:
    for candidate in (llama_cpp / "build" / "bin" / "llama-quantize", llama_cpp.parent / "build" / "bin" / "llama-quantize"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("llama-quantize")
    return Path(found) if found else None


def find_tools(root: str | Path | None = None) -> GGUFTools | None:
    """The user's ``LLAMA_CPP_DIR`` checkout, else the cached tree; None when neither is there."""
    own = os.environ.get("LLAMA_CPP_DIR")
    if own and (Path(own) / "convert_hf_to_gguf.py").is_file():
        return GGUFTools(Path(own), _built_quantize(Path(own)))
    folder = tools_dir(root)
    if not (folder / READY).is_file():
        return None
    return GGUFTools(folder / "llama.cpp", _built_quantize(folder / "llama.cpp"))


def require_tools(root: str | Path | None = None, *, fetch: bool = True, quantize: bool = False) -> GGUFTools:
    """The tools, fetching the converter on first use when ``fetch``; raises with the command."""
    tools = find_tools(root)
    if tools is None and fetch:
        fetch_sources(root)
        tools = find_tools(root)
    if tools is None:
        raise GGUFToolsMissing(f"llama.cpp's GGUF converter is not in {tools_dir(root)}: run `{SETUP}`")
    if quantize and tools.quantize is None:
        raise GGUFToolsMissing(
            f"llama-quantize (for the K-quants) is not built in {tools_dir(root)}: run `{SETUP}` "
            "(compiles it once from the vendored llama.cpp, CPU only)"
        )
    return tools


def download_sdist(into: Path) -> Path:
    """The llama-cpp-python sdist, through the user's pip configuration."""
    failure = pip_download(f"llama-cpp-python=={LLAMA_CPP_PYTHON}", into, SDIST, binary=False)
    if failure is not None:
        raise GGUFToolsMissing(
            f"could not download llama-cpp-python=={LLAMA_CPP_PYTHON} (it vendors llama.cpp's converter): "
            f"{failure}. Fetch {SDIST} where PyPI is reachable and run `train gguf-tools --sdist {SDIST}`"
        )
    return into / SDIST


def _vendored_members(archive: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The sdist's ``*/vendor/llama.cpp/`` members, renamed to ``llama.cpp/...``."""
    prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/"
    members = []
    for member in archive.getmembers():
        if not member.name.startswith(prefix) or not (member.isfile() or member.isdir()):
            continue
        relative = member.name[len(prefix):]
        if relative.split("/", 1)[0] in UNNEEDED:
            continue
        member.name = "llama.cpp/" + relative
        members.append(member)
    return members


def fetch_sources(root: str | Path | None = None, sdist: Path | None = None) -> Path:
    """Download (or take ``sdist``), verify, unpack the vendored llama.cpp; atomic: a killed
    fetch leaves no half folder."""
    target = tools_dir(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"fetching llama.cpp's GGUF converter from llama-cpp-python=={LLAMA_CPP_PYTHON} (once) ...", flush=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as scratch:
        work = Path(scratch)
        archive_path = sdist or download_sdist(work)
        if sha256_of(archive_path) != SDIST_SHA256:
            raise GGUFToolsMissing(f"{archive_path}: sha256 is not the pinned {SDIST_SHA256}")
        staged = work / "staged"
        with tarfile.open(archive_path) as archive:
            archive.extractall(staged, members=_vendored_members(archive), filter="data")
        if not (staged / "llama.cpp" / "convert_hf_to_gguf.py").is_file():
            raise GGUFToolsMissing(f"{archive_path.name} holds no vendor/llama.cpp/convert_hf_to_gguf.py")
        publish_folder(staged, target, READY, {
            "source": f"llama-cpp-python=={LLAMA_CPP_PYTHON} (sdist, vendor/llama.cpp)",
            "sdist_sha256": SDIST_SHA256,
        })
    print(f"llama.cpp sources in {target / 'llama.cpp'}", flush=True)
    return target


#: llama.cpp's own runtime, for checking a file against its kernels (bench/gguf/runtime.py):
#: greedy completions and perplexity. Optional; ``make gguf-runtime`` builds them.
RUNTIME_TARGETS = ("llama-completion", "llama-perplexity")


@dataclass(frozen=True)
class GGUFRuntime:
    """llama.cpp's ``llama-completion`` and ``llama-perplexity`` binaries."""

    completion: Path
    perplexity: Path


def require_runtime(root: str | Path | None = None) -> GGUFRuntime:
    """The runtime binaries built in the cached tree; raises with the command when missing."""
    tools = require_tools(root, fetch=False)
    binaries = [tools.llama_cpp / "build" / "bin" / name for name in RUNTIME_TARGETS]
    if not all(b.is_file() and os.access(b, os.X_OK) for b in binaries):
        raise GGUFToolsMissing(f"llama.cpp's runtime is not built in {tools.llama_cpp}: run `make gguf-runtime`")
    return GGUFRuntime(*binaries)


def build_targets(targets: tuple[str, ...], root: str | Path | None = None, jobs: int = 2) -> list[Path]:
    """Configure and build only ``targets`` (CPU, static), in ``llama.cpp/build``."""
    tools = require_tools(root)
    source, build = tools.llama_cpp, tools.llama_cpp / "build"
    for command in (
        ["cmake", "-S", str(source), "-B", str(build), *CMAKE_FLAGS],
        ["cmake", "--build", str(build), "--target", *targets, f"-j{jobs}"],
    ):
        if shutil.which(command[0]) is None:
            raise GGUFToolsMissing(f"building {', '.join(targets)} needs cmake (>= 3.14) and a C++17 compiler")
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout)[-1500:]
            raise GGUFToolsMissing(f"`{' '.join(command)}` failed:\n{tail}")
    binaries = [build / "bin" / target for target in targets]
    for binary in binaries:
        if not binary.is_file():
            raise GGUFToolsMissing(f"the build finished without {binary}")
    return binaries


def build_quantize(root: str | Path | None = None, jobs: int = 2) -> Path:
    """Configure and build only ``llama-quantize`` (CPU, static), in ``llama.cpp/build``."""
    return build_targets(("llama-quantize",), root, jobs)[0]
