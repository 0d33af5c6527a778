# smsdispatch — the two commands of the README are `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
RUN_STAMP := $(VENV)/.installed
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: run test unit lint typecheck services install bench bench-quick monitoring-check clean

# `make run` needs only the runtime dependencies; `make test` adds the development tools.
$(RUN_STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "python3 is required"; exit 1; }
	@test -d $(VENV) || $(PY) -m venv $(VENV) || { echo "install python3-venv"; exit 1; }
	$(BIN)/pip install -q --disable-pip-version-check -e .
	@touch $(RUN_STAMP)

$(STAMP): $(RUN_STAMP)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# Redis is needed by `make run` only when REDIS_URL is unset (a private redis-server is started).
run: $(RUN_STAMP)
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

# The suite on SQLite (the default log) and on PostgreSQL (production), with a real Redis.
# Long crash and accuracy tests (marked slow) run once, on PostgreSQL.
test: $(STAMP) services
	$(BIN)/ruff check .
	$(BIN)/mypy dispatcher workers simulator celeryconfig.py
	SMSD_TEST_DB=sqlite $(BIN)/pytest -q -p no:cacheprovider -m "not slow" tests
	SMSD_TEST_DB=postgres SMSD_TEST_PG_URL=$(PG_TEST_URL) $(BIN)/pytest -q -p no:cacheprovider tests/integration

# promtool: alert-rule unit tests and `check metrics` over a real scrape of a running stack.
monitoring-check: $(STAMP) services
	scripts/promtool-check.sh

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache

# Benchmarks (issue 3): everything on this machine; results in bench/results/latest.json and
# docs/benchmarks.md. SCENARIO=B runs one scenario.
bench: $(STAMP) services
	$(BIN)/python -m bench.run $(if $(SCENARIO),--scenario $(SCENARIO),)

bench-quick: $(STAMP) services
	$(BIN)/python -m bench.run --quick $(if $(SCENARIO),--scenario $(SCENARIO),)
