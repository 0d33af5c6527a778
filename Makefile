# smsdispatch — the two commands of the README are `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: run test test-sqlite test-postgres unit lint typecheck services install bench bench-quick clean

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "python3 is required"; exit 1; }
	@test -d $(VENV) || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Redis is needed by `make run` only when REDIS_URL is unset (a private redis-server is started).
run: $(STAMP)
	@command -v redis-server >/dev/null || [ -n "$$REDIS_URL" ] || scripts/ensure-services.sh redis
	$(BIN)/smsdispatch run

services:
	scripts/ensure-services.sh redis postgres

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check dispatcher workers simulator tests celeryconfig.py

typecheck: $(STAMP)
	$(BIN)/mypy dispatcher workers simulator celeryconfig.py

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

# The whole suite twice: on SQLite (the default log) and on PostgreSQL, with a real Redis.
test: $(STAMP) services
	$(BIN)/ruff check .
	$(BIN)/mypy dispatcher workers simulator celeryconfig.py
	SMSD_TEST_DB=sqlite $(BIN)/pytest -q -p no:cacheprovider tests
	SMSD_TEST_DB=postgres SMSD_TEST_PG_URL=$(PG_TEST_URL) $(BIN)/pytest -q -p no:cacheprovider tests/integration

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache

# Benchmarks (issue 3): everything on this machine; results in bench/results/latest.json and
# docs/benchmarks.md. SCENARIO=B runs one scenario.
bench: $(STAMP) services
	$(BIN)/python -m bench.run $(if $(SCENARIO),--scenario $(SCENARIO),)

bench-quick: $(STAMP) services
	$(BIN)/python -m bench.run --quick $(if $(SCENARIO),--scenario $(SCENARIO),)
