PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install test demo lint

# torch is pinned first so pip takes the local CPU build instead of pulling CUDA wheels.
install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"

test: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q -m "slow or not slow"

lint:
	$(PYTHON) -m ruff check .

# Until the bundled models and `ingest` land, the demo streams a document through a fresh model.
demo: install
	titans --version
	$(PYTHON) bench/model.py --tokens 4096 --repeats 1 --no-peer
