# One toolchain: CI, pre-commit and people run these same targets.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install js-deps prerequisites prerequisites-faults screenshots run scale-demo test test-unit test-integration test-faults lint format contracts bench clean

install: $(STAMP)

$(STAMP): pyproject.toml clients/python/pyproject.toml clients/js/package-lock.json
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]' -e ./clients/python
	touch $(STAMP)

## The browser package's tools (tsc, Playwright's library without a browser, Node's types).
js-deps: clients/js/node_modules/.package-lock.json

clients/js/node_modules/.package-lock.json: clients/js/package-lock.json
	cd clients/js && npm ci --no-audit --no-fund --silent

## Check (and, as root or with sudo, install) what the tests need from the system; see .ci/prerequisites.
prerequisites:
	bash .ci/prerequisites

## The same, and root for the fault test that cuts a worker off in a network namespace.
prerequisites-faults:
	bash .ci/prerequisites --faults "$(MAKECMDGOALS)"

## Start the whole system on its embedded defaults and print where to open it (Ctrl-C stops it).
run: install
	$(PY) -m services.stack

## The same with two of each service on one database and broker; prints each replica's addresses.
scale-demo: install
	$(PY) -m services.stack --replicas 2

## Unit, integration, browser, client and fault tests against real RabbitMQ and a real
## MongoDB-wire server. A skipped test fails the run (TASKLIGHT_ALLOW_SKIPS=1 accepts skips, loudly).
test: prerequisites-faults install js-deps
	$(PY) -m pytest

## Retake the screenshots in docs/ (desktop and phone) in Chromium, from a running stack; commit them.
screenshots: prerequisites install
	TASKLIGHT_SCREENSHOTS_DIR=docs $(PY) -m pytest tests/e2e/test_screenshots.py -q

test-unit: install
	$(PY) -m pytest tests/unit

test-integration: prerequisites install js-deps
	$(PY) -m pytest tests/integration tests/e2e

## The fault tests alone (part of `make test` too): processes killed, a RabbitMQ cluster's nodes
## killed and paused, a worker cut off in a network namespace; their figures close the output.
test-faults: prerequisites-faults install
	$(PY) -m pytest tests/faults

lint: install js-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shared services tests examples
	$(VENV)/bin/mypy clients/python/src clients/python/tests
	cd clients/js && npm run --silent typecheck

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## Render docs/contracts/ (OpenAPI, broker and WebSocket AsyncAPI) from the code; commit the diff.
contracts: install
	$(PY) -m services.contracts

## Benchmarks (needs RabbitMQ at AMQP_URL); installs the 'bench' extra first (a no-op once there).
bench: install
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m bench

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache clients/js/node_modules
