# One-command set-up and runs. Each target (re)creates the virtual environment when needed.
# torch is installed first and pinned, so pip never resolves a multi-GB CUDA build by itself;
# override with e.g. `make test TORCH=torch==2.5.1`.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.edgeprune-installed

.PHONY: setup demo test test-fast lint clean browser

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH)"
	$(PY) -m pip install --quiet -e ".[train,dev,export,sweep,distributed,tracking,dashboard]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgeprune demo

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/lint-imports

# Debian's headless Chromium and its driver, for the browser tests (the report's rendering, the live dashboard).
# Needs root (CI runs as root); when it cannot install them it says so, and those tests skip saying why.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then :; \
	else { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
	       >/dev/null; } || echo "WARNING: chromium + chromium-driver could not be installed: the browser tests \
	will be skipped" >&2; fi

clean:
	rm -rf $(VENV) runs .pytest_cache
