# The two commands a newcomer needs: `make run` and `make test`. Everything else is a helper.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check docs setup help image system-deps bench-proxy bench-ingest bench-exposition bench-merge bench-webhook fuzz soak clean

run: $(STAMP)  ## set up and run the sidecar with an embedded demo app and demo pipeline
	$(BIN)/causality-sidecar demo

test: $(STAMP) system-deps  ## set up and run every static check, the docs build and the whole test suite
	scripts/check
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet  # the docs site: a broken link or a missing page fails
	$(BIN)/pytest -n 2 --dist loadgroup -m "not serial"
	SIDECAR_NO_EXTENSIONS=1 $(BIN)/pytest -n 2 tests/events tests/merge  # the pure-Python paths
	$(BIN)/pytest -m serial

check: $(STAMP)  ## static checks only
	scripts/check

docs: $(STAMP)  ## build the docs site (docs/, mkdocs.yml) into build/site; broken links and missing pages fail
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

setup: $(STAMP)  ## create .venv and install the sidecar with its dev tools (what the others run first)

help:  ## list these targets
	@awk -F ':.*## ' '/^[a-z][a-z-]*:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The C extensions (sidecar/events/_scan.c, sidecar/merge/_runs.c, sidecar/ingest/_pblabels.c)
# are built in place by the editable install: a change to one re-runs the install. They need gcc (installed here on
# Debian when missing) and the Python headers (in every CPython install; Debian's python3
# has them in python3-dev).
$(STAMP): pyproject.toml setup.py sidecar/events/_scan.c sidecar/merge/_runs.c sidecar/ingest/_pblabels.c
	scripts/ensure-debian-packages gcc:gcc
	$(PYTHON) -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(sysconfig.get_path("include") + "/Python.h"))' \
	  || scripts/ensure-debian-packages python3-dev:python3-config
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

IMAGE ?= causality-sidecar:dev
image:  ## build the container image IMAGE (docker, else podman; air-gapped: a Debian-built base)
	scripts/image build $(IMAGE)

system-deps:  ## Debian packages the tests use (installed when missing and running as root)
	scripts/ensure-debian-packages prometheus:promtool prometheus:prometheus chromium:chromium \
	  podman:podman runc:runc debootstrap:debootstrap iproute2:ip util-linux:unshare curl:curl \
	  nginx:nginx openssl:openssl prometheus-node-exporter:prometheus-node-exporter \
	  apache2-utils:ab

bench-proxy: $(STAMP)  ## proxy benchmark: direct vs nginx vs sidecar (installs wrk, nginx)
	$(BIN)/python bench/proxy.py

bench-ingest: $(STAMP)  ## ingest benchmark: points/s decoded+stored, /metrics render and RSS with 100,000 series
	$(BIN)/python bench/ingest.py

bench-exposition: $(STAMP)  ## /metrics benchmark: protobuf beside text for 100,000 series (10 % histograms)
	$(BIN)/python bench/exposition.py

bench-merge: $(STAMP)  ## merge/export benchmark: a scrape merging 20,000 series vs direct; a push of 100,000 series
	$(BIN)/python bench/merge.py

bench-webhook: $(STAMP)  ## injection webhook benchmark: /mutate answer time for a typical pod over TLS (target p99 < 10 ms; installs wrk)
	$(BIN)/python bench/webhook.py

fuzz: $(STAMP)  ## atheris fuzzing of the OTLP protobuf/JSON decoders and the exposition, FUZZ_SECONDS per target (default 600)
	$(BIN)/python -m pip install --quiet 'atheris>=2.3'
	$(BIN)/python fuzz/run.py $${FUZZ_SECONDS:-600}

soak: $(STAMP)  ## soak through the real sidecar, 10 minutes (SOAK_SECONDS to shorten): memory plateau, no fd leak, zero errors
	$(BIN)/python bench/soak.py

clean:  ## remove .venv and build and cache directories
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
