# rnnbench: the two set-up commands are `make quickstart` and `make test`.
#   make quickstart   install into .venv (if needed) and run manifests/quickstart.yaml, then print the leaderboard
#   make test         install into .venv (if needed), lint (ruff) and run the test suite
# Variables: PYTHON (interpreter that creates the venv), TORCH_SPEC (torch to install when none is importable),
# RNNBENCH_DATA (benchmark data directory; default ../shared/data), RESULTS (results directory).

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
RESULTS ?= results
export RNNBENCH_DATA ?= $(abspath ../shared/data)
export RAY_USAGE_STATS_ENABLED ?= 0
export PIP_DISABLE_PIP_VERSION_CHECK = 1

BIN := $(VENV)/bin
STAMP := $(VENV)/.rnnbench-installed

.PHONY: install quickstart test test-fast lint leaderboard clean

$(STAMP): pyproject.toml
	@if [ ! -x $(BIN)/python ]; then \
	  if $(PYTHON) -c "import torch" 2>/dev/null; then \
	    echo "reusing the torch importable by $(PYTHON)"; $(PYTHON) -m venv --system-site-packages $(VENV); \
	  else $(PYTHON) -m venv $(VENV); fi; \
	fi
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

quickstart: install
	$(BIN)/rnnbench run manifests/quickstart.yaml --results $(RESULTS) --resume
	$(BIN)/rnnbench leaderboard $(RESULTS)

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not ray"

lint: install
	$(BIN)/ruff check .

leaderboard:
	$(BIN)/rnnbench leaderboard $(RESULTS)

clean:
	rm -rf $(RESULTS) .pytest_cache build dist
