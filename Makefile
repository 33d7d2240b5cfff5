# The two commands of the quick start are `make up` and `make test`; everything else is a helper.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up down demo ops bench bench-usage test test-unit test-interface test-e2e test-security test-faults migrate venv lock clean

$(STAMP): requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==25.3
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

up: $(STAMP)
	bash deploy/up.sh

down:
	bash deploy/down.sh

# Against a running `make up`: a US purchase for an org and a personal licence, Pay pressed on the sandbox page.
demo: $(STAMP)
	$(BIN)/python -m deploy.demo $(or $(BASE_URL),http://127.0.0.1:$(or $(HTTP_PORT),8000))

# Operator commands against a running `make up`: make ops ARGS="show-account ann@example.com" (README: Operations).
ops: $(STAMP)
	$(BIN)/python -m deploy.ops $(ARGS)

# Benchmarks start a stack of their own; figures go to results/ (not committed).
bench-usage: $(STAMP)
	bash deploy/ensure_infra.sh
	$(BIN)/python -m deploy.bench_usage

# The portal's hot paths (webhooks, billing pages, checkouts) against bare nameko/kombu/PostgreSQL
# ceilings, with the usage figures above folded into one table. `apt-get install wrk` adds wrk's figures.
bench: bench-usage
	$(BIN)/python -m deploy.bench

migrate: $(STAMP)
	$(BIN)/python -m shared.migrate

test: $(STAMP)
	bash deploy/ensure_infra.sh
	$(BIN)/python -m pytest

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

test-interface: $(STAMP)
	$(BIN)/python -m pytest tests/interface

test-e2e: $(STAMP)
	$(BIN)/python -m pytest tests/e2e

test-security: $(STAMP)
	$(BIN)/python -m pytest tests/security

# Fault injection (1 to 3 minutes a scenario): a private PostgreSQL and RabbitMQ, never the machine's.
test-faults: $(STAMP)
	$(BIN)/python -m pytest tests/faults -m faults -p no:cacheprovider $(if $(SCENARIO),-k $(SCENARIO))

# Re-freeze requirements.txt after changing requirements.in.
lock: $(STAMP)
	$(BIN)/python -m pip install --quiet -r requirements.in
	(echo "# Generated from requirements.in by: make lock. Do not edit by hand."; $(BIN)/python -m pip freeze) > requirements.txt

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
