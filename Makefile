PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install test demo lint

# torch is pinned first so pip takes the local CPU build instead of pulling CUDA wheels.
install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"

test: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q

lint:
	$(PYTHON) -m ruff check .
