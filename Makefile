# Two set-up commands on a fresh machine (Python 3.11, no GPU): `make demo` and `make test`.
# Both create or reuse the virtual environment in $(VENV). torch 2.13.0 is installed first and pinned through
# constraints.txt, so pip never swaps in a CUDA build. On a machine without a local CPU wheel, point
# PIP_EXTRA_INDEX_URL at PyTorch's CPU wheel index before the first run.

PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.labelfree-installed
MONUSEG ?= ../shared/data/monuseg/train

.PHONY: demo test test-all bench-pseudo-labels clean

$(STAMP): setup.cfg constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=23"
	$(BIN)/python -m pip install --quiet -c constraints.txt "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

## the main job on the embedded sample: nuclei masks, instance maps and overlays
demo: $(STAMP)
	$(BIN)/python -m labelfree pseudo_labels --output out/demo

## the test suite (slow end-to-end runs excluded; `make test-all` includes them)
test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow or not slow"

## pseudo labels vs Otsu + watershed on the 30 MoNuSeg training images (labels used only to score)
bench-pseudo-labels: $(STAMP)
	$(BIN)/python bench/pseudo_labels.py --images $(MONUSEG)/images --labels $(MONUSEG)/labels --out bench/results

clean:
	rm -rf out .pytest_cache
