# One-command set-up and runs. Each target (re)creates the virtual environment when needed.
# torch is installed first and pinned, so pip never resolves a multi-GB CUDA build by itself;
# override with e.g. `make test TORCH=torch==2.5.1`.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.edgeprune-installed

.PHONY: setup demo test test-fast lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[train,dev,export,sweep,distributed]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgeprune demo

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
