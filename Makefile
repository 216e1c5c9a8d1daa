# Two commands do all the set-up on a fresh machine that has only python3:
#   make test   - create .venv, install the package with its dev tools, run ruff, mypy and pytest
#   make demo   - run the example DAGs against the local emulator
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: install test lint typecheck pytest demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall whenever the dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest

test: lint typecheck pytest

demo: install
	$(BIN)/python scripts/demo.py

bench: install
	$(BIN)/python bench/client_cpu.py
	$(BIN)/python bench/emulator_throughput.py

clean:
	rm -rf $(VENV) .demo .mypy_cache .ruff_cache .pytest_cache
