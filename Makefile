# Two commands matter: `make run` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PLUGINS := $(sort $(dir $(wildcard plugins/*/pyproject.toml)))
STAMP := $(VENV)/.installed

.PHONY: setup run test lint bench docs clean

$(STAMP): pyproject.toml $(wildcard plugins/*/pyproject.toml)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[postgresql,web,test,docs,bench]' $(foreach p,$(PLUGINS),-e $(p))
	touch $@

setup: $(STAMP)

run: setup
	$(BIN)/secmod serve

test: setup
	$(BIN)/python -m pytest

# Configured in pyproject.toml ([tool.ruff.lint], [tool.mypy]).
lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/verify.py
	$(BIN)/python bench/run.py

docs: setup
	$(BIN)/mkdocs build --strict

clean:
	rm -rf $(VENV) site
