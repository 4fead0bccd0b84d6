# Two entry points, each doing its own set-up on a fresh machine:
#   make run    the main job: the INPO workflow on the embedded default (snakemake --cores all);
#               after a kill, the same command goes on where the run stopped (inpo.resume)
#   make test   the test suite
# and `make lab` runs the tabular Nash lab (python -m inpo.game and its eta sweep).
# Everything installs into .venv; nothing outside the repository is touched.

PYTHON ?= python3
VENV ?= .venv
# A CPU machine needs only the CPU build of torch (about 200 MB instead of several GB).
# This pin is found locally where a wheel directory provides it; elsewhere pass
# TORCH_INDEX=https://download.pytorch.org/whl/cpu. On a GPU machine: TORCH_SPEC=torch (PyPI's CUDA build).
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup run lab test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(if $(TORCH_SPEC),$(BIN)/pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)),)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m inpo.resume --cores all

lab: $(STAMP)
	$(BIN)/python -m inpo.game
	$(BIN)/python -m inpo.game.eta_sweep

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) results outputs multirun
