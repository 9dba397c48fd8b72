# The two commands of the README, and the checks CI runs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test check lint bench browser

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

# The dashboard's browser tests drive Debian's chromium through Playwright (no download).
browser:
	@[ -x /usr/bin/chromium ] || apt-get install -y chromium || \
		{ apt-get update && apt-get install -y chromium; }

test: lint browser
	$(BIN)/pytest -n 2 --durations=15

bench: $(BIN)/seawall
	bash benchmarks/setup.sh
	$(BIN)/python benchmarks/run.py
