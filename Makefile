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

.PHONY: venv train test test-all lint format bench reproduce constraints clean

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

clean:
	rm -rf outputs multirun wandb .pytest_cache
