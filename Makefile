# Two commands a fresh machine needs: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# An editable install leaves the package uncompiled, and where PYTHONDONTWRITEBYTECODE is set (as on these
# machines, and in many container images) every process then compiled all of it again: ~150 ms a process.
COMPILE := $(BIN)/python -m compileall -q src/onnxforge

.PHONY: demo test bench lint install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints/test.txt
	$(PIP) install --quiet -c constraints/test.txt -e '.[ort]'
	$(COMPILE)
	touch $@

$(VENV)/.installed-dev: $(BIN)/python pyproject.toml constraints/test.txt
	$(PIP) install --quiet -c constraints/test.txt -e '.[dev]'
	$(COMPILE)
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/onnxforge demo

test: $(VENV)/.installed-dev
	$(BIN)/lint-imports --config pyproject.toml
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples
	$(BIN)/python -m pytest -n 2 tests

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples
	$(BIN)/lint-imports --config pyproject.toml

bench: $(VENV)/.installed-dev
	$(BIN)/onnxforge bench

clean:
	rm -rf $(VENV) build dist src/*.egg-info
