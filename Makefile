# Every target installs into .venv first when it is missing, so a fresh clone needs only `make`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: install train test test-slow lint format bench mutate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install --quiet -e ".[test,lint]"
	# MTCNN's weights for predict (docs/face-detection.md): its pins would replace torch.
	$(BIN)/pip install --quiet --no-deps "facenet-pytorch==2.6.0"
	touch $@

install: $(VENV)/.installed

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

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

# Mutation testing, docs/mutation-testing.md: the subset below by default, every module that
# pyproject.toml's [tool.mutmut] names with FULL=1, or the mutants MODULES names (globs, e.g.
# MODULES="'fer_lightning.metrics.*'"). PYTHONPATH makes the tests' subprocesses import
# the mutated copy too (made before mutmut starts: Python skips a path that did not exist at its
# start); one worker, niced, because the machine is shared.
MUTATE_SUBSET := 'fer_lightning.losses.*' 'fer_lightning.data.split.*' 'fer_lightning.data.sampler.*'
MUTATE_REPORT := mutants/survivors.txt

mutate: $(VENV)/.installed-dev
	rm -rf mutants && mkdir mutants
	PYTHONPATH=$(CURDIR)/mutants nice -n 10 $(BIN)/mutmut run --max-children 1 \
		$(if $(FULL),,$(or $(MODULES),$(MUTATE_SUBSET)))
	$(BIN)/mutmut results --all true | grep -v ': not checked$$' > mutants/results.txt
	{ printf '# mutmut results: killed / survived / no tests / timeout\n'; \
	  for s in killed survived 'no tests' timeout suspicious segfault; do \
	    printf '%-10s %s\n' "$$s" "$$(grep -c ": $$s$$" mutants/results.txt)"; done; echo; \
	  for m in $$(grep -v ': killed$$' mutants/results.txt | sed 's/^ *//; s/: .*//'); do \
	    $(BIN)/mutmut show "$$m"; echo; done; } > $(MUTATE_REPORT)
	@echo "survivors report: $(MUTATE_REPORT) (docs/mutation-testing.md says how to read it)"

clean:
	rm -rf $(VENV) outputs multirun mutants build dist *.egg-info .pytest_cache .ruff_cache
