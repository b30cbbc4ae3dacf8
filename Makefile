# Every target installs into .venv first when it is missing, so a fresh clone needs only `make`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: install train test test-slow lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install --quiet -e ".[test,lint]"
	touch $@

install: $(VENV)/.installed

train: install
	$(BIN)/python -m fer_lightning.train experiment=quickstart $(ARGS)

test: install
	$(BIN)/python -m pytest -q $(ARGS)

test-slow: install
	$(BIN)/python -m pytest -q -m slow $(ARGS)

lint: install
	$(BIN)/ruff check fer_lightning tests bench
	$(BIN)/ruff format --check fer_lightning tests bench

format: install
	$(BIN)/ruff format fer_lightning tests bench
	$(BIN)/ruff check --fix fer_lightning tests bench

bench: install
	$(BIN)/python bench/bench_loader.py $(ARGS)

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache .ruff_cache
