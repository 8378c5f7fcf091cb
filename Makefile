# Developer entry points. Every target installs what it needs into .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint bench clean demo grafana-dashboards
.DEFAULT_GOAL := test

# Benchmarks print figures; targets are in each script's docstring.
bench: $(STAMP)
	$(BIN)/python bench/store_upsert.py

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The whole product on embedded defaults (SQLite in ./data, the sandbox estate); Ctrl-C stops it.
demo: $(STAMP)
	$(BIN)/o2c demo $(DEMO_ARGS)

# Regenerate the Grafana dashboards' JSON from their code (tests/grafana fails while it is stale).
grafana-dashboards: $(STAMP)
	$(BIN)/python -m grafana.generate

# Two workers, one per core: most tests wait on subprocesses, HTTP and databases, so the suite
# takes about half the time (847 tests: 16:26 in one process, 9:25 in two, on one machine).
# Every test already has its own database, ports and folders. PYTEST_ARGS="-n 0" runs in one.
PYTEST_ARGS ?= -n 2

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
