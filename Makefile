# One entry point for developers and CI. `make help` lists the targets.
# CI runs `make test` on a fresh machine: it creates the virtualenv, installs the
# package with its test extra, installs the Debian packages the tests use, resolves the
# Kafka jars, starts a real broker, runs lint, typecheck and pytest, and stops the broker.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
KAFKA := deploy/local/kafka.sh
# The test broker gets its own port so it never collides with a demo broker on 9092.
TEST_KAFKA_PORT ?= 19092
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z][a-z-]*:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

.PHONY: install
install: $(STAMP) ## create .venv and install the package with its test extra

.PHONY: system-deps
system-deps: ## install the Debian packages the tests use (prometheus, promtool)
	@if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else \
	    echo "promtool/prometheus missing: install the Debian package 'prometheus'" >&2; exit 1; \
	  fi; \
	fi

.PHONY: kafka-jars
kafka-jars: ## resolve the Apache Kafka jars into deploy/local/.cache
	$(KAFKA) jars

.PHONY: lint
lint: install ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check consumer emulator sampler tests bench

.PHONY: format
format: install ## apply ruff's formatting and fixable lints
	$(VENV)/bin/ruff format consumer emulator sampler tests bench
	$(VENV)/bin/ruff check --fix .

.PHONY: typecheck
typecheck: install ## mypy (strict on consumer/)
	$(VENV)/bin/mypy consumer emulator sampler

.PHONY: test
test: install system-deps kafka-jars ## lint, typecheck and the whole suite against a real broker
	@set -e; \
	trap 'KAFKA_PORT=$(TEST_KAFKA_PORT) $(KAFKA) stop' EXIT; \
	KAFKA_PORT=$(TEST_KAFKA_PORT) $(KAFKA) start; \
	$(MAKE) --no-print-directory lint typecheck; \
	PROFILE_SYNC_TEST_BOOTSTRAP=127.0.0.1:$(TEST_KAFKA_PORT) $(PY) -m pytest $(PYTEST_ARGS)

.PHONY: test-unit
test-unit: install ## the fast tier only: pure logic, no sockets
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: kafka-start
kafka-start: install kafka-jars ## start the local single-node Kafka (KRaft) on 127.0.0.1:9092
	$(KAFKA) start

.PHONY: kafka-stop
kafka-stop: ## stop the local Kafka
	$(KAFKA) stop

.PHONY: deploy-validate
deploy-validate: install ## lint the Dockerfile, build and validate every kustomize overlay, check compose
	deploy/validate.sh

.PHONY: image
image: ## build the container image with podman (deploy/image/build.sh)
	deploy/image/build.sh

.PHONY: image-test
image-test: install kafka-jars ## build the image and run it like a pod against Kafka and the emulator
	deploy/image/test.sh

.PHONY: demo
demo: install kafka-jars ## the main job on the local stack: Kafka + emulator + sample events -> consumer
	$(PY) deploy/local/demo.py

.PHONY: bench
bench: install ## benchmarks (numbers, not tests): hot path, emulator, end to end
	@set -e; for b in bench/bench_*.py; do echo "== $$b"; $(PY) $$b; done
