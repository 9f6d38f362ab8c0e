# tf-model-server: every entry point. Logic lives in Python (scripts/ops, image/, tests/);
# these targets only wire it together. `make help` lists them.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# auto: kind when it can run here (Docker answers and the pinned node image is present or
# pullable), else local (offline single-node cluster from upstream binaries); or force
# kind, local, or existing (whatever KUBECONFIG points at). See README "Clusters".
CLUSTER ?= auto
PYTHON ?= python3
VENV := .venv
PY := PYTHONPATH=$(CURDIR)/scripts:$(CURDIR)/image $(CURDIR)/$(VENV)/bin/python
OPS := $(PY) -m ops
export PATH := $(CURDIR)/bin:$(PATH)

.PHONY: help venv tools test unit compat chart-test lint serve image load kind-image up down k8s-build \
        cluster-up cluster-down cluster-status kubeconfig smoke e2e ct-install \
        bench bench-inprocess bench-smoke soak soak-memory swap-memory docs

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

venv: ## Python env (cached outside the clone, linked at .venv)
	@PYTHONPATH=$(CURDIR)/scripts $(PYTHON) -m ops.venv

test: venv tools ## fast suites, no cluster: unit, compatibility (peer clients), chart rendering (installs what they need)
	$(PY) -m pytest tests/unit tests/compat tests/chart

compat: venv ## the compatibility suite only: TF Serving's examples and tests, tritonclient, KServe's client
	$(PY) -m pytest tests/compat

unit: venv ## server unit tests only
	$(PY) -m pytest tests/unit

# The server (image/): demo models, a local server, the image (ops.image; `load` is the cluster's).
models: venv ## demo models (anomaly v1+v2, heavy) built from code into build/models
	$(PY) -m demo_models.build --out $(CURDIR)/build/models --versions 1 2

serve: models ## the server on 127.0.0.1:8501 with the demo models (Ctrl-C stops it)
	TFMS_HOST=127.0.0.1 TFMS_MODEL_BASE_PATH=$(CURDIR)/build/models TFMS_MODEL_NAME=anomaly,heavy $(PY) -m modelserver

image: venv ## images tf-model-server:{0.1.0,v1,v2} (offline debootstrap base when python:3.11-slim can't be pulled)
	$(OPS).image build

image-startup: venv ## container start -> ready vs `import tensorflow` + model load (median of 3)
	$(OPS).image startup-time

# Pinned tools (ops.tools: helm, ct + etc/ + yamllint/yamale, kind, helm-docs, actionlint; kubectl
# from ops.k8s_build). Every target that needs one depends on `tools`; a cached tool is only re-linked.
tools: venv ## pinned tools into ./bin (download, else go install; cached outside the clone)
	$(OPS).tools install
	$(OPS).k8s_build kubectl

chart-test: venv tools ## chart rendering tests only (bin/helm template)
	$(PY) -m pytest tests/chart

lint: venv tools ## chart README fresh, helm lint --strict (+ ci values), ct lint --all, yamllint, ruff
	$(OPS).lint

docs: venv ## regenerate chart/README.md (helm-docs) and the chart files generated from modelserver.settings
	$(OPS).chart_docs generate

# Benchmarks (tests/bench): ours vs naive Flask, MLServer, BentoML and the no-model ceiling.
BENCH := PYTHONPATH=$(CURDIR)/scripts:$(CURDIR)/image:$(CURDIR)/tests $(CURDIR)/$(VENV)/bin/python -m bench.run

bench: venv ## side-by-side benchmark, REST and gRPC (~25 min): table, reports/bench/*.json + PNG; BENCH_ARGS=... to narrow
	$(BENCH) $(BENCH_ARGS)

swap-memory: venv ## peak RSS while anomaly and heavy swap to a new version (run it under `flock /tmp/tfms-measure.lock`)
	PYTHONPATH=$(CURDIR)/scripts:$(CURDIR)/image:$(CURDIR)/tests $(CURDIR)/$(VENV)/bin/python -m bench.swap_memory

bench-inprocess: venv ## ours vs the ceiling as ASGI apps in this process, one pinned core: CPU/request by thread (INPROCESS_ARGS=--profile)
	PYTHONPATH=$(CURDIR)/scripts:$(CURDIR)/image:$(CURDIR)/tests $(CURDIR)/$(VENV)/bin/python -m bench.inprocess $(INPROCESS_ARGS)

bench-smoke: venv ## seconds-long run of the real benchmark harness (ours + ceiling, REST and gRPC) proving it works
	$(BENCH) --smoke $(BENCH_ARGS)

# Soak (tests/soak): the server for 10 minutes at ~70% of its maximum; the memory bound in a container.
SOAK := PYTHONPATH=$(CURDIR)/scripts:$(CURDIR)/image:$(CURDIR)/tests $(CURDIR)/$(VENV)/bin/python -m soak

soak: venv ## 10 min at ~70% of the measured maximum: RSS and open fds must not grow >5% (SOAK_ARGS=--duration 240 --warmup 60)
	$(SOAK).run $(SOAK_ARGS)

soak-memory: venv ## N concurrent max-size bodies for 60 s in a container at the chart's 1 GiB limit (IMAGE=tf-model-server:0.1.0)
	$(SOAK).memory --image $(or $(IMAGE),tf-model-server:0.1.0) $(SOAK_ARGS)

# End-to-end suites (tests/e2e) on a real cluster: upgrade, healing, scaling, disruption.
e2e: venv tools image ## e2e suites on a cluster (CLUSTER=kind|local|existing|auto; PYTEST_ARGS='-m upgrade'; E2E_EXTRA_VALUES=file)
	$(PY) -m pytest tests/e2e --cluster $(CLUSTER) $(PYTEST_ARGS)

# Clusters (ops.cluster; the local one is ops.local_cluster, built by ops.k8s_build).
cluster-up: venv tools ## start the cluster (CLUSTER=auto|kind|local|existing); ends with `export KUBECONFIG=...`
	$(OPS).cluster up --provider $(CLUSTER)

cluster-down: venv tools ## delete the cluster; the local one leaves no process, mount, interface or rule behind
	$(OPS).cluster down --provider $(CLUSTER)

cluster-status: venv tools ## which cluster is up, its components, nodes and pods
	$(OPS).cluster status --provider $(CLUSTER)

kubeconfig: venv ## print the path of the running cluster's kubeconfig
	@$(OPS).cluster kubeconfig --provider $(CLUSTER)

k8s-build: venv tools ## Kubernetes, etcd, CoreDNS, metrics-server, crictl + component images for CLUSTER=local (cached)
	$(OPS).k8s_build all

load: venv tools ## load tf-model-server:{0.1.0,v1,v2} into the running cluster (kind, or local containerd)
	$(OPS).image_load --provider $(CLUSTER)

kind-image: venv tools ## kind's node image built offline with `kind build node-image` (when the public one can't be pulled)
	$(OPS).kind_image build

up: venv tools ## cluster + image + load + helm install on NodePort 30080, then prints a curl that works
	$(OPS).quickstart up --provider $(CLUSTER)

down: venv tools ## undo `make up`: delete the cluster (CLUSTER=existing: only the release and its namespace)
	$(OPS).quickstart down --provider $(CLUSTER)

smoke: venv tools ## on the running cluster: chart defaults in a restricted namespace, helm test, DNS, NodePort prediction, ci/ dry-runs
	$(OPS).smoke

# chart-testing for real (ops.chart_testing): CT_ARGS='--helm-timeout 120s', '--keep'.
ct-install: venv tools ## ct install of every chart/ci scenario (+ helm test) on the cluster that is up; time + result table
	$(OPS).chart_testing --provider $(CLUSTER) $(CT_ARGS)
