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

# The README's main job on the samples, with the bundled models: ingest notes, ask about them, score a
# genome (with a track), against a memory of one segment, and a VCF.
demo: install
	rm -rf .demo && mkdir -p .demo
	cd .demo && titans ingest ../samples/notes.txt --memory notes.mem
	cd .demo && titans ask notes.mem --questions ../samples/questions.txt --evidence
	cd .demo && titans score ../samples/genome.fa -o scores.tsv --track genome.bedgraph --window 1000
	cd .demo && titans ingest ../samples/first_copy.fa --memory seen.mem
	cd .demo && titans score ../samples/genome.fa --memory seen.mem -o vs-memory.tsv
	cd .demo && titans score ../samples/second_copy.fa --memory seen.mem -o copy.tsv
	cd .demo && titans score --variants ../samples/variants.vcf --reference ../samples/genome.fa -o variants.tsv
	titans info .demo/notes.mem
