# smsdispatch — the two commands of the README are `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
RUN_STAMP := $(VENV)/.installed
PG_TEST_URL ?= postgresql://postgres@127.0.0.1:5432/test
# The same PostgreSQL through Debian's PgBouncer in transaction mode (scripts/ensure-services.sh).
PGBOUNCER_TEST_URL ?= postgresql://postgres@127.0.0.1:6432/test?pooler=pgbouncer
# Wheels of the client's dependencies, pytest and the build backend, for the test that installs
# ./client into an empty venv without an index (tests/unit/test_client_distribution.py).
WHEELHOUSE := $(VENV)/wheelhouse

.PHONY: run test unit lint typecheck services install bench bench-quick monitoring-check clean snippets snippets-test audit lock chaos chaos-quick

# `make run` installs the runtime set (requirements.lock), `make test` the runtime set and the
# development tools (requirements-dev.lock), each synced exactly with uv (pip as a fallback),
# the project and its client (./client, its own distribution) editable: scripts/install-venv.sh.
$(RUN_STAMP): requirements.lock requirements-dev.lock pyproject.toml client/pyproject.toml scripts/install-venv.sh
	@scripts/install-venv.sh run

$(STAMP): requirements-dev.lock pyproject.toml client/pyproject.toml scripts/install-venv.sh
	@scripts/install-venv.sh dev
	@$(BIN)/pip download -q --disable-pip-version-check -d $(WHEELHOUSE) ./client pytest 'setuptools>=77'

install: $(STAMP)

# Redis is needed by `make run` only when REDIS_URL is unset (a private redis-server is started).
run: $(RUN_STAMP)
	@command -v redis-server >/dev/null || [ -n "$$REDIS_URL" ] || scripts/ensure-services.sh redis
	$(BIN)/smsdispatch run

services:
	scripts/ensure-services.sh redis postgres

# Everything but the tests is type-checked; everything is linted and format-checked.
TYPED = dispatcher workers devstack simulator bench chaos snippets scripts celeryconfig.py client

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check $(TYPED) tests

typecheck: $(STAMP)
	$(BIN)/mypy $(TYPED)

unit: $(STAMP)
	$(BIN)/pytest -q client/tests
	$(BIN)/pytest -q tests/unit

# The suite on SQLite (the default log) and on PostgreSQL (production), with a real Redis.
# Long crash and accuracy tests (marked slow) run once, on PostgreSQL; tests of code that is
# the same on both databases (input validation, HTTP clients, routing, Redis rate limits:
# marked any_db) run once, on SQLite. The tests marked pgbouncer (API, pools, scheduler,
# reports, exporter, migrations) run once more with every connection through PgBouncer in
# transaction mode, the tests' own database creation included (docs/operations.md).
test: $(STAMP) services
	scripts/ensure-services.sh chromium smsc sentinel zsh pgbouncer
	$(BIN)/ruff check .
	$(BIN)/ruff format --check $(TYPED) tests
	$(BIN)/mypy $(TYPED)
	$(BIN)/pytest -q -p no:cacheprovider client/tests
	SMSD_TEST_DB=sqlite $(BIN)/pytest -q -p no:cacheprovider -m "not slow" tests
	SMSD_TEST_DB=postgres SMSD_TEST_PG_URL=$(PG_TEST_URL) $(BIN)/pytest -q -p no:cacheprovider -m "not any_db or slow" tests/integration
	SMSD_TEST_DB=postgres SMSD_TEST_PG_URL='$(PGBOUNCER_TEST_URL)' $(BIN)/pytest -q -p no:cacheprovider -m "pgbouncer and not any_db" tests/integration

# Known vulnerabilities in the locked dependencies (pip-audit). Fails on a vulnerability; says
# "NOT AUDITED" (and passes) when the vulnerability service cannot be reached. See docs/security.md.
audit: $(STAMP)
	$(BIN)/python scripts/audit.py

# Re-resolve pyproject.toml's dependencies into the lock files (hashes, every platform): the dev
# set first, then the runtime set constrained to it, so both pin the same versions. Versions
# already locked are kept unless UPGRADE=1. The client (./client) is installed editable beside
# the project, so the lock names only its dependencies.
LOCK_FLAGS = --universal --python-version 3.11 --generate-hashes --quiet \
	--custom-compile-command "make lock" --no-emit-package smsdispatch-client \
	$(if $(UPGRADE),--upgrade,)
lock:
	@uv=$$(scripts/uv.sh) || { echo "make lock needs uv"; exit 1; }; \
	$$uv pip compile pyproject.toml --extra dev $(LOCK_FLAGS) -o requirements-dev.lock && \
	$$uv pip compile pyproject.toml -c requirements-dev.lock $(LOCK_FLAGS) -o requirements.lock

# promtool: alert-rule unit tests and `check metrics` over a real scrape of a running stack.
monitoring-check: $(STAMP) services
	scripts/promtool-check.sh

# Snippets in nine languages (docs/snippets/), generated from snippets/spec.toml and executed
# against a running stack in each runtime Debian packages (installed here when missing).
snippets: $(STAMP)
	$(BIN)/python -m snippets.generate

snippets-test: $(STAMP) services
	snippets/install-runtimes.sh
	SMSD_TEST_DB=sqlite $(BIN)/pytest -q -p no:cacheprovider -m snippets -rs tests/snippets

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache

# Benchmarks (issue 3): everything on this machine; results in bench/results/latest.json and
# bench/results/runs/<run>.md, summarised in docs/benchmarks.md. SCENARIO=B runs one scenario;
# PGBOUNCER=1 runs A and E again behind PgBouncer in transaction mode, beside the direct figures.
BENCH_FLAGS = $(if $(SCENARIO),--scenario $(SCENARIO),) $(if $(PGBOUNCER),--pgbouncer,)
bench: $(STAMP) services
	$(if $(PGBOUNCER),scripts/ensure-services.sh pgbouncer,)
	$(BIN)/python -m bench.run $(BENCH_FLAGS)

bench-quick: $(STAMP) services
	$(if $(PGBOUNCER),scripts/ensure-services.sh pgbouncer,)
	$(BIN)/python -m bench.run --quick $(BENCH_FLAGS)

# Chaos run (issue 7): the pipeline on PostgreSQL while workers are SIGKILLed, a private Redis
# primary (with a replica and three Sentinels) is restarted, then failed over, database
# connections are cut, the carrier fails and the webhook receiver is down; then a
# reconciliation against the carrier's and the receiver's records (docs/reliability.md).
# `make chaos` (20,000 messages, ~7 min, up to 30) writes its log to chaos/results/runs/;
# `make chaos-quick` (2,000, ~3 min, CI) writes var/chaos/latest.json. SEED=n repeats a schedule.
chaos: $(STAMP) services
	scripts/ensure-services.sh sentinel
	SMSD_TEST_DB=postgres SMSD_TEST_PG_URL=$(PG_TEST_URL) $(BIN)/python -m chaos.run $(if $(SEED),--seed $(SEED),)

chaos-quick: $(STAMP) services
	scripts/ensure-services.sh sentinel
	SMSD_TEST_DB=postgres SMSD_TEST_PG_URL=$(PG_TEST_URL) timeout 480 $(BIN)/python -m chaos.run --quick $(if $(SEED),--seed $(SEED),)
