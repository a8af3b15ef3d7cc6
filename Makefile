# stash — every install step lives here, so a fresh machine needs only `make run` / `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Heavy builds (test control plane, restic, rest-server, helm, the database tools, the CSI
# snapshot stack) are cached outside the clone, keyed by their inputs, so CI's fresh clone
# reuses them.
export STASH_CACHE ?= $(HOME)/.cache/stash
# prometheus: promtool for the chart's alert rules, and with prometheus-pushgateway the
# real Prometheus and Pushgateway the metrics tests start on free loopback ports (their
# daemons are never started by the packages, below).
# OpenSearch (Java 17, fetched by maven, unzipped) and elasticdump (Node >= 18 and npm;
# npm is installed below only when missing: NodeSource's nodejs carries its own).
DEB_PACKAGES := ca-certificates util-linux procps prometheus prometheus-pushgateway \
  postgresql-15 postgresql-client-15 mariadb-server mariadb-client redis-server redis-tools \
  openjdk-17-jre-headless maven unzip nodejs
STAMP := $(VENV)/.installed
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= stash:$(VERSION)

.PHONY: help install test test-unit test-integration lint fmt manifests run bench clean chaos \
        cluster-up cluster-down tools image

help:
	@echo "make run        the embedded default: local control plane + demo backup/restore"
	@echo "make test       install everything, then run the whole test suite"
	@echo "make install    .venv + Debian packages + cached Go builds (idempotent)"
	@echo "make lint       ruff + mypy --strict"
	@echo "make manifests  regenerate manifests/, webhooks/ and the chart's generated files"
	@echo "make image      build the container image $(IMAGE) (needs docker)"
	@echo "make chaos      the chaos suite in full: >=100 faults (STASH_CHAOS_INJECTIONS, STASH_CHAOS_SEED)"
	@echo "make bench      benchmarks (ratios against baselines measured in the same run)"
	@echo "make cluster-up / cluster-down   a local control plane in the background"

$(STAMP): pyproject.toml dev/pyproject.toml constraints.txt
	@# A policy-rc.d that answers 101 keeps postinst scripts from starting daemons
	@# (prometheus would take :9090, the pushgateway :9091); it is removed again if we
	@# put it there.
	@if ! dpkg -s $(DEB_PACKAGES) >/dev/null 2>&1; then \
	  rc_policy=; if [ ! -e /usr/sbin/policy-rc.d ]; then rc_policy=/usr/sbin/policy-rc.d; \
	    printf '#!/bin/sh\nexit 101\n' > $$rc_policy; chmod 755 $$rc_policy; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEB_PACKAGES); \
	  rc=$$?; if [ -n "$$rc_policy" ]; then rm -f $$rc_policy; fi; exit $$rc; fi
	command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -c constraints.txt -e '.[test,dev]' -e ./dev
	touch $@

tools: $(STAMP)
	@tests/cluster/build.sh >/dev/null
	@tests/tools/build.sh >/dev/null
	@tests/tools/build-helm.sh >/dev/null
	@tests/csi/build.sh >/dev/null
	@tests/tools/build-databases.sh >/dev/null
	@tests/tools/build-elasticsearch.sh >/dev/null

install: $(STAMP) tools

test: install
	tests/run-suite $(BIN)/pytest $(PYTEST_ARGS)

# The chaos suite in full (tests/chaos; `make test` runs it in a bounded form).
chaos: install
	STASH_CHAOS_INJECTIONS=$${STASH_CHAOS_INJECTIONS:-100} STASH_CHAOS_STRICT=1 \
	  tests/run-pytest $(BIN)/pytest tests/chaos -p no:cacheprovider $(PYTEST_ARGS)

test-unit: $(STAMP)
	tests/run-pytest $(BIN)/pytest tests/unit $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench charts
	$(BIN)/ruff format --check src tests bench charts
	$(BIN)/mypy src/stash src/stash_dev

fmt: $(STAMP)
	$(BIN)/ruff check --fix src tests bench charts
	$(BIN)/ruff format src tests bench charts

manifests: $(STAMP)
	$(BIN)/stash crds --out-dir manifests/crds
	$(BIN)/stash webhook --render-to webhooks
	$(BIN)/python -c 'from stash.contract.rbac import write_manifests; write_manifests("manifests/rbac")'
	$(BIN)/python charts/generate.py

image:
	@docker info >/dev/null 2>&1 || { \
	  echo "make image: no docker here (the docker CLI with a running daemon is needed)."; \
	  echo "On a machine that has one, run:"; \
	  echo "  docker build -t $(IMAGE) ."; exit 1; }
	docker build -t $(IMAGE) .

run: install
	$(BIN)/stash dev demo

cluster-up: install
	$(BIN)/stash dev up

cluster-down: $(STAMP)
	$(BIN)/stash dev down

# Every bench at its defaults, at the sizes issue #19 sets (10,000 configurations; the
# webhook also beside a busy control plane and operator); the soak takes an hour.
bench: install
	@for b in bench/*.py; do \
	  case $$b in bench/operator_scale.py) a="--configs 10000";; *) a="";; esac; \
	  echo "== $$b $$a"; $(BIN)/python $$b $$a || exit 1; done
	@echo "== bench/webhook_latency.py --busy-cluster 200"
	@$(BIN)/python bench/webhook_latency.py --busy-cluster 200

clean:
	-$(BIN)/stash dev down 2>/dev/null
	rm -rf $(VENV) .stash-dev .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
