# One command each: `make setup`, `make test`, `make demo`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# CPU machines get the local CPU build of torch (1 GB); machines with an NVIDIA driver get the
# stock CUDA wheels from the registry. Override with `make setup TORCH_SPEC=...`.
TORCH_SPEC ?= $(shell if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo "torch"; else echo "torch==2.13.0"; fi)
EXTRAS  ?= $(shell if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo "dev,gpu"; else echo "dev"; fi)

.PHONY: setup test test-fast demo lint bench gpu-check reference docs docs-look clean

setup:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install "$(TORCH_SPEC)"
	$(BIN)/pip install -e ".[$(EXTRAS)]"
	$(BIN)/hicatalog --help >/dev/null

# Everything, as CI runs it: the slow tests guard job submission, killed builds and fetches,
# node loss, training on S3, the demo and the workflow (docs/development.md, "Tests").
test:
	$(BIN)/python -m pytest -q --durations=40

# The quick loop while editing: everything not marked slow, i.e. no Ray and no training
# (tests/conftest.py marks every test that uses a Ray fixture).
test-fast:
	$(BIN)/python -m pytest -q -m "not slow"

demo:
	$(BIN)/hicatalog demo --out runs/demo

# The reference pages of docs/reference, made from the code (tests/test_reference.py checks them).
reference:
	$(BIN)/python -m hicatalog.reference docs/reference

# The documentation site, every warning an error (into site/; tests/test_docs_site.py builds it too).
docs:
	$(BIN)/mkdocs build --strict

# Screenshots of the site in headless Chromium, to look at (docs/development.md; needs
# chromium, so neither `make test` nor CI runs it).
docs-look:
	scripts/look_at_docs.sh /tmp/docs-shots

lint:
	$(BIN)/ruff check hicatalog jobs tests benchmarks

bench:
	$(BIN)/python benchmarks/run_all.py --out runs/bench

# Where the GPU path stands, in one command of about 5 minutes on one GPU (docs/operations/gpu.md);
# `make gpu-check ARGS=--smoke` runs it with tiny sizes anywhere, as CI does.
gpu-check:
	$(BIN)/python benchmarks/gpu_check.py --out runs/gpu_check $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
