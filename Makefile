PYTHON ?= python3
PIP = $(PYTHON) -m pip

.PHONY: install test demo lint

# torch is pinned first so pip takes the local CPU build instead of pulling CUDA wheels.
install:
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"

test: install
	$(PYTHON) -m ruff check .
	OMP_WAIT_POLICY=PASSIVE $(PYTHON) -m pytest -q -m "slow or not slow"

lint:
	$(PYTHON) -m ruff check .

# Until the bundled models land (#6), the demo ingests this repository's docs with a freshly
# initialised model and shows what the memory holds.
demo: install
	rm -rf .demo
	$(PYTHON) -c "from titans_cli.models import TitansConfig, TitansModel; TitansModel(TitansConfig(d_model=64, n_layers=2, n_heads=2, name='demo')).save_pretrained('.demo/model')"
	titans ingest README.md FORMAT.md --memory .demo/docs.mem --model .demo/model
	titans info .demo/docs.mem
