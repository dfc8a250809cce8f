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
	$(PY) -m pip install -q -e '.[test,compile]'
	touch $(STAMP)

# The hot path compiled with mypyc (consumer/compiled.py), rebuilt when one of its sources
# changes; an edited source the build has not caught up with runs interpreted, never stale.
COMPILED_SOURCES := $(wildcard consumer/core/*.py) consumer/mapping/contract_reader.py \
	consumer/mapping/records.py consumer/kafka/source.py consumer/compiled.py \
	consumer/commands/compiled.py
consumer/_compiled.json: $(STAMP) $(COMPILED_SOURCES)
	@$(MAKE) --no-print-directory build-deps
	$(PY) -m consumer compiled build

.PHONY: build-deps
build-deps: ## a C compiler and the interpreter's headers, for the compiled hot path
	@include=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])'); \
	if ! command -v cc >/dev/null || [ ! -f "$$include/Python.h" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc python3-dev >/dev/null; \
	  else \
	    echo "a C compiler and Python.h are missing: install the Debian packages 'gcc python3-dev'" >&2; exit 1; \
	  fi; \
	fi

.PHONY: install
install: $(STAMP) consumer/_compiled.json ## create .venv, install the package with its test extra, compile the hot path

.PHONY: compile
compile: $(STAMP) build-deps ## (re)build the compiled hot path; `profile-sync compiled status` tells what runs
	$(PY) -m consumer compiled build

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
	$(PY) -m consumer compiled status; \
	PROFILE_SYNC_TEST_BOOTSTRAP=127.0.0.1:$(TEST_KAFKA_PORT) $(PY) -m pytest $(PYTEST_ARGS); \
	echo "== the fast tier again, interpreted (PROFILE_SYNC_COMPILED=off)"; \
	PROFILE_SYNC_COMPILED=off $(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

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
