# The two commands of the README, and the checks CI runs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test check lint bench

$(BIN)/seawall: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(BIN)/seawall
	$(BIN)/seawall demo

lint: $(BIN)/seawall
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest -n 2 --durations=15

bench: $(BIN)/seawall
	bash benchmarks/setup.sh
	$(BIN)/python benchmarks/run.py
