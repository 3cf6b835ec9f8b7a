# Two commands set everything up: `make train` and `make test`.
# GPU users: make train TORCH_SPEC='torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128'
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the extras the test suite exercises: logger=tensorboard, the Optuna sweeper
EXTRAS := dev,sweep,tensorboard
# W&B never needs a network or an account here: runs are written offline, `wandb sync` uploads them later
export WANDB_MODE ?= offline
export WANDB_SILENT ?= true

.PHONY: venv train test test-all lint format bench reproduce constraints gpu-check gpu-wheels clean

venv: $(STAMP)

# constraints.txt: the exact versions the published numbers (README, docs/) were measured with
$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/python scripts/train.py $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m 'slow or not slow'

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python scripts/bench.py all $(ARGS)

reproduce: $(STAMP)
	$(BIN)/python scripts/reproduce.py $(ARGS)

# after a deliberate upgrade: rewrite constraints.txt from the venv (torch without its +cpu/+cuXXX build tag, so
# TORCH_SPEC picks the build), then rerun the suite and the measurements
constraints:
	{ echo '# The exact versions (pip freeze of the venv, minus gradlab itself) the README and docs/ numbers were'; \
	  echo '# measured with; make venv installs through it. Regenerate with make constraints after a deliberate upgrade.'; \
	  $(BIN)/python -m pip freeze --exclude-editable | sed -E 's/^(torch==[^+]*)\+.*/\1/'; } > constraints.txt

# Everything only a GPU shows (src/gpu_check/): the gpu tests, the paper-scale recurrent runs and the benchmarks
# on CUDA, in one call within ARGS='--budget SECONDS' (470 by default); without CUDA a dry run. Results go to
# $$OUT when set (the device machine's result folder), else gpu-check/. Needs no venv where python3 has torch
# and Lightning: Hydra, OmegaConf and W&B then come from .whl/ (make gpu-wheels, here, and bring .whl along).
GPU_PYTHON = $(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON))
GPU_CHECK_OUT ?= $(if $(OUT),$(OUT),gpu-check)
gpu-check:
	PYTHONPATH=$(CURDIR)$(if $(PYTHONPATH),:$(PYTHONPATH)) $(GPU_PYTHON) scripts/gpu_check.py --out $(GPU_CHECK_OUT) $(ARGS)

# Wheels (CPython 3.12, manylinux x86-64) of Hydra, OmegaConf and W&B at this venv's versions, and of all they
# need at constraints.txt's, into .whl/ for a GPU machine without a package index (antlr4's runtime is a source
# release: built here)
GPU_WHEEL_PLATFORMS = manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
	manylinux1_x86_64
VERSION_OF = $(BIN)/python -c 'import importlib.metadata as m, sys; print(" ".join(f"{n}=={m.version(n)}" for n in sys.argv[1:]))'
gpu-wheels: $(STAMP)
	rm -rf .whl && mkdir .whl
	$(BIN)/python -m pip wheel --quiet --no-deps -w .whl $$($(VERSION_OF) antlr4-python3-runtime)
	$(BIN)/python -m pip download --quiet --only-binary=:all: --python-version 3.12 --implementation cp \
		$(addprefix --platform ,$(GPU_WHEEL_PLATFORMS)) -c constraints.txt --find-links .whl -d .whl \
		$$($(VERSION_OF) hydra-core omegaconf wandb)
	@echo "$$(ls .whl | wc -l) wheels, $$(du -sh .whl | cut -f1) in .whl/"

clean:
	rm -rf outputs multirun wandb .pytest_cache gpu-check
