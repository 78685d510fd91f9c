# The two commands of the README:
#   make serve   start convlens on its embedded defaults (SQLite + local workers) on 127.0.0.1:8000
#   make test    install everything the tests need, then run the whole test suite
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test install install-dev lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[worker]'

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[worker,dev]'

serve: install
	$(BIN)/convlens serve

test: install-dev
	bash scripts/test-services.sh
	$(BIN)/ruff check app tests bench
	$(BIN)/mypy app
	$(BIN)/python -m pytest

lint: install-dev
	$(BIN)/ruff check app tests bench
	$(BIN)/mypy app

bench: install-dev
	$(BIN)/python -m bench
