# tf-model-server: every entry point. Logic lives in Python (scripts/ops, image/, tests/);
# these targets only wire it together. `make help` lists them.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# kind (users' default), local (offline single-node cluster from upstream binaries),
# or existing (whatever KUBECONFIG points at).
CLUSTER ?= kind
PYTHON ?= python3
VENV := .venv
PY := PYTHONPATH=$(CURDIR)/scripts:$(CURDIR)/image $(CURDIR)/$(VENV)/bin/python
OPS := $(PY) -m ops
export PATH := $(CURDIR)/bin:$(PATH)

.PHONY: help venv tools test unit chart-test lint serve image load up down \
        cluster-up cluster-down cluster-status kubeconfig smoke e2e ct-install \
        bench bench-smoke docs

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

venv: ## Python env (cached outside the clone, linked at .venv)
	@PYTHONPATH=$(CURDIR)/scripts $(PYTHON) -m ops.venv

test: venv ## fast suites, no cluster: server unit tests + chart rendering tests
	$(PY) -m pytest tests/unit tests/chart

unit: venv ## server unit tests only
	$(PY) -m pytest tests/unit

# Chart tooling (ops.tools: helm, ct + etc/ + yamllint/yamale, kind, helm-docs). Other tools
# append their own installer line to this recipe.
tools: venv ## pinned tools into ./bin (download, else go install; cached outside the clone)
	$(OPS).tools install

chart-test: venv ## chart rendering tests only (bin/helm template; needs `make tools`)
	$(PY) -m pytest tests/chart

lint: venv ## chart README fresh, helm lint --strict (+ ci values), ct lint --all, yamllint, ruff
	$(OPS).lint

docs: venv ## regenerate chart/README.md (helm-docs) from values.yaml comments
	$(OPS).chart_docs generate

# Benchmarks (tests/bench): ours vs naive Flask, MLServer, BentoML and the no-model ceiling.
BENCH := PYTHONPATH=$(CURDIR)/scripts:$(CURDIR)/image:$(CURDIR)/tests $(CURDIR)/$(VENV)/bin/python -m bench.run

bench: venv ## side-by-side benchmark (~30 min): table, reports/bench/*.json + PNG; BENCH_ARGS=... to narrow
	$(BENCH) $(BENCH_ARGS)

bench-smoke: venv ## seconds-long run of the real benchmark harness (ours + ceiling) proving it works
	$(BENCH) --smoke $(BENCH_ARGS)
